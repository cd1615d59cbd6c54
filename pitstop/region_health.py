"""Region health from what users feel, and the hysteresis that keeps a blip from failing a region over.

Signals are read from Prometheus *outside* the region (the failing region's own monitoring may be gone with
it): the region's request error ratio and p95 latency from Istio telemetry, a synthetic probe of its edge
(`probe_success`, as a blackbox exporter reports it) and the availability of its critical services. The PromQL
of each signal is a template over `{region}`, `{window}` and `{services}` (`SignalQueries`), so a fleet with
other metric names plugs its own.

`evaluate_region` turns one reading into a verdict (pure); `RegionHysteresis.decide` turns the verdicts in
order into a decision: N verdicts in a row equal to the expected one (default 3) meet the expectation; an
other verdict resets the streak (a flap); `max_evaluations` bounds the watch (unmet). "No data" is
INCONCLUSIVE: it never counts toward a streak and never passes.
"""

from __future__ import annotations

import math
from enum import StrEnum

from pydantic import BaseModel, Field


class RegionVerdict(StrEnum):
    HEALTHY = "healthy"
    BAD = "bad"
    INCONCLUSIVE = "inconclusive"


class SloThresholds(BaseModel):
    max_error_ratio: float = Field(0.05, ge=0, le=1, description="5xx share of the region's requests")
    max_p95_ms: float = Field(500.0, gt=0, description="p95 request latency in milliseconds")
    min_probe_success: float = Field(1.0, ge=0, le=1, description="the region's edge probe (1 = answers)")
    min_availability: float = Field(0.5, ge=0, le=1, description="available / desired replicas, worst critical service")


class SignalQueries(BaseModel):
    """PromQL templates; `{region}`, `{window}` and `{services}` (a regex of the critical services) are filled in."""

    error_ratio: str = Field(
        'sum(rate(istio_requests_total{{reporter="destination",region="{region}",response_code=~"5.."}}[{window}]))'
        ' / sum(rate(istio_requests_total{{reporter="destination",region="{region}"}}[{window}]))')
    p95_ms: str = Field(
        'histogram_quantile(0.95, sum by (le) (rate(istio_request_duration_milliseconds_bucket'
        '{{reporter="destination",region="{region}"}}[{window}])))')
    probe_success: str = Field('min(probe_success{{region="{region}"}})')
    availability: str = Field(
        'min(kube_deployment_status_replicas_available{{region="{region}",deployment=~"{services}"}}'
        ' / kube_deployment_spec_replicas{{region="{region}",deployment=~"{services}"}})')

    def render(self, *, region: str, window: str, critical_services: list[str]) -> dict[str, str]:
        """The queries for one region; no critical services = no availability query."""
        values = {"region": region, "window": window, "services": "|".join(critical_services)}
        queries = {"error_ratio": self.error_ratio.format(**values), "p95_ms": self.p95_ms.format(**values),
                   "probe_success": self.probe_success.format(**values)}
        if critical_services:
            queries["availability"] = self.availability.format(**values)
        return queries


class RegionReading(BaseModel):
    """One reading of a region's signals; None = no data."""

    region: str
    at: float = Field(description="unix seconds of the reading")
    error_ratio: float | None = None
    p95_ms: float | None = None
    probe_success: float | None = None
    availability: float | None = None


class RegionEvaluation(BaseModel):
    reading: RegionReading
    verdict: RegionVerdict
    breaches: list[str] = Field(default_factory=list)


def _known(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def evaluate_region(reading: RegionReading, thresholds: SloThresholds) -> RegionEvaluation:
    """BAD when any signal with data breaches its threshold; HEALTHY when none does and the region answered
    (traffic or probe data); INCONCLUSIVE otherwise."""
    error_ratio, p95 = _known(reading.error_ratio), _known(reading.p95_ms)
    probe, availability = _known(reading.probe_success), _known(reading.availability)
    breaches = []
    if error_ratio is not None and error_ratio > thresholds.max_error_ratio:
        breaches.append(f"error ratio {error_ratio:.1%} > {thresholds.max_error_ratio:.1%}")
    if p95 is not None and p95 > thresholds.max_p95_ms:
        breaches.append(f"p95 {p95:.0f}ms > {thresholds.max_p95_ms:g}ms")
    if probe is not None and probe < thresholds.min_probe_success:
        breaches.append(f"edge probe {probe:g} < {thresholds.min_probe_success:g}")
    if availability is not None and availability < thresholds.min_availability:
        breaches.append(f"critical services {availability:.0%} available < {thresholds.min_availability:.0%}")
    if breaches:
        verdict = RegionVerdict.BAD
    elif error_ratio is None and probe is None:
        verdict = RegionVerdict.INCONCLUSIVE
    else:
        verdict = RegionVerdict.HEALTHY
    return RegionEvaluation(reading=reading, verdict=verdict, breaches=breaches)


class HysteresisDecision(BaseModel):
    met: bool = Field(description="`required` verdicts in a row equal to the expected one")
    done: bool = Field(description="no further evaluation can change the outcome")
    streak: int = Field(description="expected verdicts in a row at the end")
    longest: int = Field(0, description="the longest run of expected verdicts seen")
    first_expected_index: int | None = Field(None, description="index of the first verdict of the winning streak")
    reason: str = ""


class RegionHysteresis(BaseModel):
    expect: RegionVerdict = Field(description="BAD to confirm an outage, HEALTHY to confirm a recovery")
    required: int = Field(3, ge=1, le=100, description="N expected verdicts in a row")
    max_evaluations: int = Field(20, ge=1, le=10_000, description="give up (unmet) after this many")

    def decide(self, verdicts: list[RegionVerdict]) -> HysteresisDecision:
        """Met at the first run of `required` expected verdicts; any other verdict resets the streak."""
        streak, start, longest = 0, None, 0
        for index, verdict in enumerate(verdicts):
            if verdict != self.expect:
                streak, start = 0, None
                continue
            start = index if streak == 0 else start
            streak += 1
            longest = max(longest, streak)
            if streak >= self.required:
                return HysteresisDecision(met=True, done=True, streak=streak, longest=longest,
                                          first_expected_index=start,
                                          reason=f"{streak} {self.expect.value} evaluations in a row")
        done = len(verdicts) >= self.max_evaluations or (
            self.max_evaluations - len(verdicts) + streak < self.required)
        reason = (f"not {self.required} {self.expect.value} evaluations in a row within {self.max_evaluations} "
                  f"(longest run {longest})"
                  if done else f"{streak} of {self.required} {self.expect.value} evaluations in a row")
        return HysteresisDecision(met=False, done=done, streak=streak, longest=longest, first_expected_index=start,
                                  reason=reason)
