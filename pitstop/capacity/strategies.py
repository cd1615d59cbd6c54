"""Recommendation strategies: settings + a pure function over one container's history (KRR's shape).

- `simple` = KRR's default strategy (robusta-dev/krr `strategies/simple.py`): CPU request = the P95 of each pod's
  CPU usage, the highest over pods; no CPU limit; memory request = limit = the highest working set over pods
  + 15 %; 336 h of history (the collection's window: `history_hours` of the step and the CLI); fewer than 100
  points (over all pods) -> "not enough data"; a resource an HPA scales on is left alone unless `allow_hpa`.
  KRR's minimums 10 mCPU and 100 MiB apply.
- `vpa` = the VPA recommender's (kubernetes/autoscaler `vertical-pod-autoscaler/pkg/recommender`): CPU samples
  in a decaying histogram (24 h half-life); memory = per-pod peaks per 24 h interval in another; target P90,
  lower bound P50, upper bound P95, each + 15 % safety margin; bounds widened by the VPA's confidence multipliers
  (upper x (1 + 1/days), lower x (1 + 0.001/days)^-2, days = history length); an OOM kill adds a memory peak of
  max(used x 1.2, used + 100 MiB) (used = max(request, observed)); floors 25 mCPU and 250 MiB.

Percentiles of `simple` interpolate linearly between ranks, as Prometheus' `quantile_over_time` (and numpy) do.
"No data" and "not enough data" are answers (status + info), never a guessed number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel, Field

from .histogram import CPU_BUCKETS, MEMORY_BUCKETS, DecayingHistogram
from .usage import DAY, ContainerHistory

MIB = 2**20


class Strategy(StrEnum):
    SIMPLE = "simple"
    VPA = "vpa"


class Status(StrEnum):
    OK = "ok"
    NO_DATA = "no_data"
    NOT_ENOUGH_DATA = "not_enough_data"
    HPA = "hpa"


class SimpleSettings(BaseModel, extra="forbid"):
    cpu_percentile: float = Field(95.0, gt=0, le=100, description="percentile of each pod's CPU usage")
    memory_buffer_percentage: float = Field(15.0, ge=0, description="added to the highest memory working set")
    points_required: int = Field(100, ge=1, description="fewer points over all pods -> not enough data")
    allow_hpa: bool = Field(False, description="recommend resources an HPA scales on too")
    cpu_min_millicores: float = Field(10.0, ge=0)
    memory_min_mib: float = Field(100.0, ge=0)


class VpaSettings(BaseModel, extra="forbid"):
    half_life_hours: float = Field(24.0, gt=0)
    target_percentile: float = Field(0.9, gt=0, le=1)
    lower_bound_percentile: float = Field(0.5, gt=0, le=1)
    upper_bound_percentile: float = Field(0.95, gt=0, le=1)
    safety_margin: float = Field(0.15, ge=0)
    oom_bump_ratio: float = Field(1.2, ge=1)
    oom_min_bump_mib: float = Field(100.0, ge=0)
    min_cpu_millicores: float = Field(25.0, ge=0)
    min_memory_mib: float = Field(250.0, ge=0)
    points_required: int = Field(1, ge=1)
    allow_hpa: bool = False


class Resources(BaseModel):
    cpu_cores: float | None = None
    memory_bytes: float | None = None


class ContainerSpec(BaseModel):
    """A container's requests and limits as deployed (None: not set)."""

    name: str
    requests: Resources = Field(default_factory=Resources)
    limits: Resources = Field(default_factory=Resources)


class HpaTargets(BaseModel):
    name: str
    cpu: bool = False
    memory: bool = False


class Evidence(BaseModel):
    """What a reviewer needs to check a recommendation."""

    window_start_unix: float
    window_end_unix: float
    history_hours: float
    pods: int
    cpu_points: int
    memory_points: int
    cpu_percentiles: dict[str, float] = Field(default_factory=dict, description="cores, highest over pods")
    memory_max_bytes: float = 0.0
    memory_peaks: int = Field(0, description="(pod, 24 h interval) peaks (vpa)")
    oom_kills: int = 0
    restarts: int = 0


class ContainerRecommendation(BaseModel):
    container: str
    strategy: Strategy
    cpu_status: Status
    memory_status: Status
    info: str = ""
    current: ContainerSpec
    cpu_request: float | None = Field(None, description="cores; None: no recommendation (see status)")
    cpu_limit: float | None = Field(None, description="cores; None: no limit recommended")
    memory_request: float | None = Field(None, description="bytes")
    memory_limit: float | None = None
    cpu_bounds: tuple[float, float] | None = Field(None, description="(lower, upper) cores (vpa)")
    memory_bounds: tuple[float, float] | None = None
    evidence: Evidence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between ranks (Prometheus `quantile_over_time`, numpy default)."""
    return percentile_of_sorted(sorted(values), q)


def percentile_of_sorted(ordered: Sequence[float], q: float) -> float:
    if not ordered:
        return math.nan
    rank = q / 100 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _evidence(history: ContainerHistory) -> Evidence:
    pcts: dict[str, float] = {}
    for values in history.cpu_by_pod.values():
        ordered = sorted(values)
        for q in (50, 90, 95, 99, 100) if ordered else ():
            name = f"p{q}" if q < 100 else "max"
            pcts[name] = round(max(pcts.get(name, 0.0), percentile_of_sorted(ordered, q)), 6)
    return Evidence(
        window_start_unix=history.start_unix, window_end_unix=history.end_unix,
        history_hours=round((history.end_unix - history.start_unix) / 3600, 2),
        pods=len(set(history.cpu_by_pod) | set(history.memory_max_by_pod)), cpu_points=history.cpu_points,
        memory_points=history.memory_points, cpu_percentiles=pcts,
        memory_max_bytes=max(history.memory_max_by_pod.values(), default=0.0), memory_peaks=len(history.memory_peaks),
        oom_kills=history.oom_kills, restarts=history.restarts,
    )


def _data_status(points: int, required: int, hpa_scaled: bool) -> Status:
    if hpa_scaled:
        return Status.HPA
    if points == 0:
        return Status.NO_DATA
    return Status.NOT_ENOUGH_DATA if points < required else Status.OK


def _info(cpu: Status, memory: Status, points: tuple[int, int], required: int, hpa: HpaTargets | None) -> str:
    notes = []
    for resource, status, n in (("cpu", cpu, points[0]), ("memory", memory, points[1])):
        if status is Status.HPA and hpa is not None:
            notes.append(f"{resource}: HPA {hpa.name} scales on it (allow_hpa to recommend anyway)")
        elif status is Status.NOT_ENOUGH_DATA:
            notes.append(f"{resource}: not enough data ({n} points < {required})")
        elif status is Status.NO_DATA:
            notes.append(f"{resource}: no data")
    return "; ".join(notes)


def simple(history: ContainerHistory, spec: ContainerSpec, settings: SimpleSettings,
           hpa: HpaTargets | None = None) -> ContainerRecommendation:
    """KRR's simple strategy (see the module docstring)."""
    cpu_status = _data_status(history.cpu_points, settings.points_required,
                              bool(hpa and hpa.cpu and not settings.allow_hpa))
    memory_status = _data_status(history.memory_points, settings.points_required,
                                 bool(hpa and hpa.memory and not settings.allow_hpa))
    rec = ContainerRecommendation(
        container=spec.name, strategy=Strategy.SIMPLE, cpu_status=cpu_status, memory_status=memory_status,
        info=_info(cpu_status, memory_status, (history.cpu_points, history.memory_points), settings.points_required, hpa),
        current=spec, evidence=_evidence(history),
    )
    if cpu_status is Status.OK:
        cpu = max(percentile(v, settings.cpu_percentile) for v in history.cpu_by_pod.values() if v)
        rec.cpu_request = max(cpu, settings.cpu_min_millicores / 1000)
    if memory_status is Status.OK:
        memory = max(history.memory_max_by_pod.values()) * (1 + settings.memory_buffer_percentage / 100)
        rec.memory_request = rec.memory_limit = max(memory, settings.memory_min_mib * MIB)
    return rec


def vpa_histograms(history: ContainerHistory, spec: ContainerSpec,
                   settings: VpaSettings) -> tuple[DecayingHistogram, DecayingHistogram]:
    """CPU samples and memory peaks (plus an OOM bump) in the VPA's decaying histograms."""
    half_life = settings.half_life_hours * 3600
    cpu = DecayingHistogram(CPU_BUCKETS, half_life, history.end_unix)
    for pod, values in history.cpu_by_pod.items():
        for t, v in zip(history.cpu_times_by_pod[pod], values):
            cpu.add(v, at_unix=t)
    memory = DecayingHistogram(MEMORY_BUCKETS, half_life, history.end_unix)
    for (_pod, interval), peak in history.memory_peaks.items():
        memory.add(peak, at_unix=min(history.end_unix, (interval + 1) * DAY))
    if history.oom_kills:
        used = max(spec.requests.memory_bytes or 0.0, max(history.memory_max_by_pod.values(), default=0.0))
        bumped = max(used * settings.oom_bump_ratio, used + settings.oom_min_bump_mib * MIB)
        memory.add(bumped, at_unix=history.end_unix)
    return cpu, memory


def _bounds(h: DecayingHistogram, s: VpaSettings, days: float, floor: float) -> tuple[float, float, float]:
    """(target, lower, upper) with the margin, the confidence multipliers and the floor."""
    margin = 1 + s.safety_margin
    target = h.percentile(s.target_percentile) * margin
    lower = h.percentile(s.lower_bound_percentile) * margin * (1 + 0.001 / days) ** -2
    upper = h.percentile(s.upper_bound_percentile) * margin * (1 + 1 / days)
    return max(target, floor), max(lower, floor), max(upper, floor)


def vpa(history: ContainerHistory, spec: ContainerSpec, settings: VpaSettings,
        hpa: HpaTargets | None = None) -> ContainerRecommendation:
    """The VPA recommender's target and bounds (see the module docstring); requests only (the VPA keeps the
    limit:request ratio, so the limits follow the current ratio where one is set)."""
    cpu_status = _data_status(history.cpu_points, settings.points_required, bool(hpa and hpa.cpu and not settings.allow_hpa))
    memory_status = _data_status(history.memory_points, settings.points_required,
                                 bool(hpa and hpa.memory and not settings.allow_hpa))
    rec = ContainerRecommendation(
        container=spec.name, strategy=Strategy.VPA, cpu_status=cpu_status, memory_status=memory_status,
        info=_info(cpu_status, memory_status, (history.cpu_points, history.memory_points), settings.points_required, hpa),
        current=spec, evidence=_evidence(history),
    )
    cpu_h, memory_h = vpa_histograms(history, spec, settings)
    days = max(1 / 24, (history.end_unix - history.start_unix) / 86400)
    if cpu_status is Status.OK:
        target, lower, upper = _bounds(cpu_h, settings, days, settings.min_cpu_millicores / 1000)
        rec.cpu_request, rec.cpu_bounds = target, (lower, upper)
        rec.cpu_limit = _scaled_limit(spec.limits.cpu_cores, spec.requests.cpu_cores, target)
    if memory_status is Status.OK:
        target, lower, upper = _bounds(memory_h, settings, days, settings.min_memory_mib * MIB)
        rec.memory_request, rec.memory_bounds = target, (lower, upper)
        rec.memory_limit = _scaled_limit(spec.limits.memory_bytes, spec.requests.memory_bytes, target)
    return rec


def _scaled_limit(limit: float | None, request: float | None, target: float) -> float | None:
    if not limit or not request:
        return None
    return target * limit / request
