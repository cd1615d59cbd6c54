"""Analysis verdicts: is a measured metric within its threshold? Pure functions over typed data.

`evaluate(measurement, threshold) -> Verdict` is the one decision every metric check makes. Rules:
- a value inside [min, max] passes, outside fails;
- no data (empty result, NaN) is INCONCLUSIVE, never a pass;
- an unreachable metrics backend is INCONCLUSIVE too (the measurement carries the error as a value).
"""

from __future__ import annotations

import math
from enum import StrEnum

from pydantic import BaseModel, Field, model_validator


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


class Threshold(BaseModel):
    """Accepted range of a metric; at least one bound. Bounds are inclusive."""

    min: float | None = Field(None, description="lowest acceptable value (inclusive)")
    max: float | None = Field(None, description="highest acceptable value (inclusive)")

    @model_validator(mode="after")
    def _bounds(self) -> Threshold:
        if self.min is None and self.max is None:
            raise ValueError("a threshold needs `min`, `max` or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"threshold min {self.min} is greater than max {self.max}")
        return self

    def describe(self) -> str:
        if self.min is not None and self.max is not None:
            return f"within [{self.min:g}, {self.max:g}]"
        if self.min is not None:
            return f">= {self.min:g}"
        return f"<= {self.max:g}"


class Measurement(BaseModel):
    """One metric reading. `value=None` means no data; `error` means the backend could not be asked."""

    value: float | None = None
    error: str | None = Field(None, description="why there is no reading (backend unreachable, ...)")

    @property
    def has_value(self) -> bool:
        return self.error is None and self.value is not None and not math.isnan(self.value)


def evaluate(measurement: Measurement, threshold: Threshold) -> Verdict:
    """PASS when the value lies within the threshold, FAIL outside it, INCONCLUSIVE without a value."""
    if not measurement.has_value:
        return Verdict.INCONCLUSIVE
    value = measurement.value
    assert value is not None  # for the type checker: has_value guarantees it
    if threshold.min is not None and value < threshold.min:
        return Verdict.FAIL
    if threshold.max is not None and value > threshold.max:
        return Verdict.FAIL
    return Verdict.PASS


def explain(measurement: Measurement, threshold: Threshold, verdict: Verdict) -> str:
    """One human line for the audit timeline."""
    if measurement.error is not None:
        return f"inconclusive: metrics unavailable ({measurement.error})"
    if not measurement.has_value:
        return f"inconclusive: no data (expected {threshold.describe()})"
    return f"{verdict.value}: value {measurement.value:g}, expected {threshold.describe()}"
