"""Usage history per container, accumulated while it streams in (one range-query answer at a time).

`UsageAccumulator` takes samples as Prometheus returns them (per pod and container, CPU cores from a rate and
memory working-set bytes) and keeps only what the strategies and forecasts need: every CPU sample per pod (an
`array('d')`, 8 bytes a point: KRR's percentile is exact), the memory maximum per pod, memory peaks per pod and
24 h interval (the VPA's memory samples), hourly sums of the workload's usage (forecasts) and a coarse usage
profile for the report's plots. 500 services x 3 pods x 14 days at a 5-minute step is ~50 MB of CPU samples.

`ContainerHistory` is the read side handed to strategies: also what synthetic unit-test histories build.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

DAY = 86400
HOUR = 3600
PROFILE_SECONDS = 6 * HOUR  # one point of a report plot


class WorkloadKey(BaseModel, frozen=True):
    namespace: str
    workload: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.workload}"


@dataclass
class ContainerHistory:
    """One container of one workload (all its pods) over the window; what a strategy reads."""

    cpu_by_pod: dict[str, array] = field(default_factory=dict)  # cores, one value per step
    cpu_times_by_pod: dict[str, array] = field(default_factory=dict)  # unix seconds of those values
    memory_max_by_pod: dict[str, float] = field(default_factory=dict)  # bytes
    memory_points_by_pod: dict[str, int] = field(default_factory=dict)
    memory_peaks: dict[tuple[str, int], float] = field(default_factory=dict)  # (pod, 24 h interval) -> peak bytes
    oom_kills: int = 0
    restarts: int = 0
    start_unix: float = 0.0
    end_unix: float = 0.0

    def add_cpu(self, pod: str, points: Iterable[tuple[float, float]]) -> None:
        values = self.cpu_by_pod.setdefault(pod, array("d"))
        times = self.cpu_times_by_pod.setdefault(pod, array("d"))
        for t, v in points:
            values.append(v)
            times.append(t)

    def add_memory(self, pod: str, points: Iterable[tuple[float, float]]) -> None:
        peak = self.memory_max_by_pod.get(pod, 0.0)
        count = self.memory_points_by_pod.get(pod, 0)
        for t, v in points:
            count += 1
            peak = max(peak, v)
            interval = (pod, int(t // DAY))
            if v > self.memory_peaks.get(interval, 0.0):
                self.memory_peaks[interval] = v
        self.memory_max_by_pod[pod] = peak
        self.memory_points_by_pod[pod] = count

    @property
    def cpu_points(self) -> int:
        return sum(len(v) for v in self.cpu_by_pod.values())

    @property
    def memory_points(self) -> int:
        return sum(self.memory_points_by_pod.values())


class UsageProfile(BaseModel):
    """A workload's usage in 6-hour buckets (the report's plots): per-pod maxima, CPU cores and memory MiB."""

    start_unix: float = 0.0
    seconds: int = PROFILE_SECONDS
    cpu_cores: list[float] = Field(default_factory=list)
    memory_mib: list[float] = Field(default_factory=list)


@dataclass
class WorkloadHistory:
    key: WorkloadKey
    containers: dict[str, ContainerHistory] = field(default_factory=dict)
    hourly_cpu: dict[int, float] = field(default_factory=dict)  # hour index -> sum of every pod's samples
    hourly_memory: dict[int, float] = field(default_factory=dict)
    step_seconds: float = 300.0
    profile_cpu: dict[int, float] = field(default_factory=dict)
    profile_memory: dict[int, float] = field(default_factory=dict)

    def container(self, name: str) -> ContainerHistory:
        return self.containers.setdefault(name, ContainerHistory())

    def hourly_series(self, *, start_unix: float, end_unix: float, memory: bool = False) -> list[float]:
        """Mean total usage per whole hour of the window (summed over pods and containers)."""
        buckets = self.hourly_memory if memory else self.hourly_cpu
        return hourly_means(buckets, start_unix=start_unix, end_unix=end_unix, step_seconds=self.step_seconds)

    def profile(self, *, start_unix: float, end_unix: float) -> UsageProfile:
        first, last = int(start_unix // PROFILE_SECONDS), int(end_unix // PROFILE_SECONDS)
        return UsageProfile(
            start_unix=first * PROFILE_SECONDS,
            cpu_cores=[round(self.profile_cpu.get(i, 0.0), 4) for i in range(first, last + 1)],
            memory_mib=[round(self.profile_memory.get(i, 0.0) / 2**20, 1) for i in range(first, last + 1)],
        )


def hourly_means(buckets: dict[int, float], *, start_unix: float, end_unix: float, step_seconds: float) -> list[float]:
    """Every whole hour between start and end: the hour's sum over samples / samples a pod has per hour (so pods
    add up). An hour without samples is 0 (nothing ran)."""
    per_hour = max(1.0, HOUR / step_seconds)
    first, last = int(start_unix // HOUR) + 1, int(end_unix // HOUR) - 1
    return [buckets.get(hour, 0.0) / per_hour for hour in range(first, last + 1)]


class UsageAccumulator:
    """Every workload's history, fed one range-query answer at a time (`add_cpu_series`, `add_memory_series`).

    A series is identified by namespace, pod and container; `workload_of(namespace, pod)` names its workload
    (None: not a workload this report covers, dropped). Hourly sums count each (timestamp, pod) once per series,
    so the hourly mean of a workload is its summed usage (all pods) at a typical instant of that hour.
    """

    def __init__(self, *, start_unix: float, end_unix: float, step_seconds: float) -> None:
        self.start_unix, self.end_unix, self.step_seconds = start_unix, end_unix, step_seconds
        self.workloads: dict[WorkloadKey, WorkloadHistory] = {}
        self.samples = 0

    def workload(self, key: WorkloadKey) -> WorkloadHistory:
        found = self.workloads.get(key)
        if found is None:
            found = self.workloads[key] = WorkloadHistory(key=key, step_seconds=self.step_seconds)
        return found

    def add_cpu_series(self, key: WorkloadKey, *, pod: str, container: str, points: list[tuple[float, float]]) -> None:
        history = self.workload(key)
        history.container(container).add_cpu(pod, points)
        self._bucket(history.hourly_cpu, history.profile_cpu, points)

    def add_memory_series(self, key: WorkloadKey, *, pod: str, container: str, points: list[tuple[float, float]]) -> None:
        history = self.workload(key)
        history.container(container).add_memory(pod, points)
        self._bucket(history.hourly_memory, history.profile_memory, points)

    def _bucket(self, hourly: dict[int, float], profile: dict[int, float], points: list[tuple[float, float]]) -> None:
        """Hourly sums over every sample (pods add up); profile: per-pod maxima per 6 hours."""
        for t, v in points:
            hour = int(t // HOUR)
            hourly[hour] = hourly.get(hour, 0.0) + v
            p = int(t // PROFILE_SECONDS)
            if v > profile.get(p, 0.0):
                profile[p] = v
        self.samples += len(points)
