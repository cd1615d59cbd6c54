"""`pitstop.analysis.evaluate`: pass inside the range, fail outside, inconclusive without a value."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from pitstop.analysis import Measurement, Threshold, Verdict, evaluate, explain


@pytest.mark.parametrize(
    ("value", "threshold", "expected"),
    [
        (0.5, Threshold(max=1.0), Verdict.PASS),
        (1.0, Threshold(max=1.0), Verdict.PASS),  # bounds are inclusive
        (1.01, Threshold(max=1.0), Verdict.FAIL),
        (99.0, Threshold(min=99.0), Verdict.PASS),
        (98.9, Threshold(min=99.0), Verdict.FAIL),
        (5.0, Threshold(min=1.0, max=10.0), Verdict.PASS),
        (0.0, Threshold(min=1.0, max=10.0), Verdict.FAIL),
        (11.0, Threshold(min=1.0, max=10.0), Verdict.FAIL),
        (-3.0, Threshold(max=0.0), Verdict.PASS),
    ],
)
def test_value_against_threshold(value: float, threshold: Threshold, expected: Verdict) -> None:
    assert evaluate(Measurement(value=value), threshold) is expected


def test_no_data_is_inconclusive_never_a_pass() -> None:
    assert evaluate(Measurement(value=None), Threshold(max=1.0)) is Verdict.INCONCLUSIVE
    assert evaluate(Measurement(value=None), Threshold(min=0.0)) is Verdict.INCONCLUSIVE


def test_nan_is_no_data() -> None:
    assert evaluate(Measurement(value=math.nan), Threshold(max=1.0)) is Verdict.INCONCLUSIVE


def test_unavailable_backend_is_inconclusive_even_with_a_stale_value() -> None:
    m = Measurement(value=0.1, error="Prometheus at http://x unreachable")
    assert evaluate(m, Threshold(max=1.0)) is Verdict.INCONCLUSIVE
    assert "unavailable" in explain(m, Threshold(max=1.0), Verdict.INCONCLUSIVE)


def test_explain_names_value_and_expectation() -> None:
    t = Threshold(min=1, max=2)
    assert explain(Measurement(value=3), t, Verdict.FAIL) == "fail: value 3, expected within [1, 2]"
    assert "no data" in explain(Measurement(), t, Verdict.INCONCLUSIVE)


def test_threshold_needs_a_bound_and_an_ordered_range() -> None:
    with pytest.raises(ValidationError, match="needs `min`, `max` or both"):
        Threshold()
    with pytest.raises(ValidationError, match="greater than max"):
        Threshold(min=2, max=1)
