"""The VPA recommender's decaying exponential histogram (kubernetes/autoscaler
`vertical-pod-autoscaler/pkg/recommender/util/histogram.go`, `decaying_histogram.go`,
`histogram_options.go`), so `vpa` recommendations land in the same buckets as the VPA's.

Buckets grow by `ratio` (1.05): bucket i starts at `first * (ratio**i - 1) / (ratio - 1)`. A sample's weight
decays with a half-life: weight * 2 ** ((t - reference) / half_life), the reference being the window's end
(only ratios matter). `percentile(p)` is the END of the bucket where the cumulative weight reaches p, as in
the VPA (so it never under-recommends inside a bucket).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

CPU_FIRST_BUCKET_CORES = 0.01  # 10 mCPU
CPU_MAX_CORES = 1000.0
MEMORY_FIRST_BUCKET_BYTES = 1e7  # 10 MB
MEMORY_MAX_BYTES = 1e12  # 1 TB
BUCKET_RATIO = 1.05


@dataclass(frozen=True)
class BucketScheme:
    first_bucket: float
    max_value: float
    ratio: float = BUCKET_RATIO

    @property
    def buckets(self) -> int:
        return int(math.ceil(math.log(self.max_value * (self.ratio - 1) / self.first_bucket + 1, self.ratio))) + 1

    def start(self, bucket: int) -> float:
        return self.first_bucket * (self.ratio**bucket - 1) / (self.ratio - 1)

    def find(self, value: float) -> int:
        if value < self.first_bucket:
            return 0
        bucket = int(math.log(value * (self.ratio - 1) / self.first_bucket + 1, self.ratio))
        return min(bucket, self.buckets - 1)

    def bucket_of(self, value: float) -> tuple[float, float]:
        """[start, end) of the bucket holding `value`."""
        b = self.find(value)
        return self.start(b), self.start(b + 1)


CPU_BUCKETS = BucketScheme(first_bucket=CPU_FIRST_BUCKET_CORES, max_value=CPU_MAX_CORES)
MEMORY_BUCKETS = BucketScheme(first_bucket=MEMORY_FIRST_BUCKET_BYTES, max_value=MEMORY_MAX_BYTES)


@dataclass
class DecayingHistogram:
    scheme: BucketScheme
    half_life_seconds: float
    reference_unix: float
    weights: dict[int, float] = field(default_factory=dict)
    total: float = 0.0

    def add(self, value: float, *, weight: float = 1.0, at_unix: float) -> None:
        w = weight * 2.0 ** ((at_unix - self.reference_unix) / self.half_life_seconds)
        b = self.scheme.find(value)
        self.weights[b] = self.weights.get(b, 0.0) + w
        self.total += w

    def percentile(self, p: float) -> float:
        if self.total <= 0:
            return 0.0
        threshold = p * self.total
        partial = 0.0
        bucket = 0
        for bucket in sorted(self.weights):
            partial += self.weights[bucket]
            if partial >= threshold:
                break
        if bucket < self.scheme.buckets - 1:
            return self.scheme.start(bucket + 1)
        return self.scheme.start(bucket)
