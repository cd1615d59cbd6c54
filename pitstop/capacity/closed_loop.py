"""The rightsizing closed loop's models and decisions (pure): what changes, when the canary is healthy.

A team opts in with `closed_loop: {enabled: true}` in the capacity policy file (`policy.TeamPolicy`). The loop
(`workflows/rightsizing.py`, workflow `RightsizingLoop`) applies a service's recommended requests/limits to a
canary slice through a `ProgressiveRelease` whose candidate differs from stable by its resources only, watches
the candidate's pods on durable timers, then promotes or aborts the release (which rolls back).

Verdicts (each `pitstop.analysis.Verdict`; one FAIL reverts, INCONCLUSIVE holds):
- OOM: an OOM-killed candidate container (last or current termination reason `OOMKilled`, from the pods'
  container statuses) or more restarts than `max_restarts` fails; no candidate pod seen yet is inconclusive.
- throttling: the share of CFS periods throttled (`container_cpu_cfs_throttled_periods_total` over
  `container_cpu_cfs_periods_total`, candidate pods) above `max_throttled_ratio` fails; no series: inconclusive.
- latency: the candidate's p95 above `latency_p95_max_ms`, or above `max_latency_ratio` x the stable version's
  p95, fails; no traffic measured yet: inconclusive.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from pitstop.analysis import Measurement, Threshold, Verdict
from pitstop.delivery.promql import CheckQuery, QueryScope, latency_p95_query, region_selector
from pitstop.delivery.spec import ContainerResources

from .strategies import ContainerRecommendation

LOOP_WORKFLOW = "RightsizingLoop"
JsonObject = dict[str, Any]


class LoopSettings(BaseModel, extra="forbid"):
    """A team's closed-loop settings (policy file key `closed_loop`); the loop runs only with `enabled: true`."""

    enabled: bool = Field(False, description="the team opts in to closed-loop applies")
    window_seconds: float = Field(1800.0, gt=0, description="how long the canary is watched before rolling out")
    interval_seconds: float = Field(60.0, gt=0, description="time between two looks at the canary (durable timer)")
    canary_replicas: int = Field(1, ge=1, description="pods with the new resources while watching")
    steps: list[int] = Field(default_factory=lambda: [10, 25], description="canary traffic weights (percent)")
    max_oom_kills: int = Field(0, ge=0, description="OOM-killed candidate containers tolerated")
    max_restarts: int = Field(0, ge=0, description="candidate container restarts tolerated (any reason)")
    max_throttled_ratio: float = Field(0.25, ge=0, le=1, description="share of CFS periods throttled")
    latency_p95_max_ms: float | None = Field(500.0, gt=0, description="candidate p95 bound; None = none")
    max_latency_ratio: float | None = Field(1.25, gt=0, description="candidate p95 / stable p95 bound; None = none")
    rate_window: str = Field("1m", pattern=r"^\d+(s|m|h)$", description="PromQL range of the rate() queries")
    progress_deadline_seconds: float = Field(600.0, gt=0, description="the release's progress deadline")
    region_label: str | None = Field("region", description="label selecting the region's series; None = none")


class LoopInput(BaseModel):
    """Input of `RightsizingLoop`: one service in one region, the resources to try, the team's settings."""

    service: str
    namespace: str
    region: str
    team: str = ""
    deployment: str | None = None
    resources: dict[str, ContainerResources] = Field(description="container -> requests/limits to apply")
    settings: LoopSettings
    task_queue: str = Field("", description="base task queue; cluster activities on <base>-<region>")
    evidence: str = Field("", description="one line: where the numbers come from (strategy, window, percentiles)")
    started_by: str = Field("", description="who started the loop: the subject the pitstop API verified")

    @property
    def deployment_name(self) -> str:
        return self.deployment or self.service


def loop_workflow_id(region: str, namespace: str, service: str) -> str:
    """One loop per service and region at a time (the id is taken while it runs)."""
    return f"rightsizing/{region}/{namespace}/{service}"


class LoopPlanInput(BaseModel):
    namespace: str
    deployment: str
    region: str
    resources: dict[str, ContainerResources]


class LoopPlan(BaseModel):
    """What applying would change on the stable Deployment (the `capacity.loop_plan` activity's answer)."""

    deployment: str
    image: str
    version: str
    candidate_version: str
    current: dict[str, ContainerResources] = Field(default_factory=dict)
    changes: list[str] = Field(default_factory=list, description="one line per changed value")


class CanaryPodsInput(BaseModel):
    namespace: str
    region: str
    candidate: str = Field(description="the candidate Deployment's name (`<deployment>-canary`)")


class PodSignals(BaseModel):
    """The candidate's pods as the Kubernetes API shows them (container statuses)."""

    pods: int = 0
    restarts: int = 0
    oom_kills: int = 0
    oom_pods: list[str] = Field(default_factory=list)


class CanarySignals(BaseModel):
    pods: PodSignals = Field(default_factory=PodSignals)
    throttled_ratio: float | None = None
    latency_p95_ms: float | None = None
    stable_latency_p95_ms: float | None = None


class SignalCheck(BaseModel):
    name: Literal["oom", "throttling", "latency"]
    verdict: Verdict
    reason: str


class LoopDecision(BaseModel):
    verdict: Verdict
    checks: list[SignalCheck]

    @property
    def reason(self) -> str:
        failed = [c.reason for c in self.checks if c.verdict is Verdict.FAIL]
        return "; ".join(failed) if failed else "; ".join(c.reason for c in self.checks)


class LoopStatus(BaseModel):
    """What the `status` query of `RightsizingLoop` shows."""

    phase: str = "pending"
    message: str = ""
    changes: list[str] = Field(default_factory=list)
    looks: int = 0
    last_checks: list[SignalCheck] = Field(default_factory=list)
    signals: CanarySignals | None = None


LoopResult = Literal["rolled_out", "reverted", "unchanged", "refused"]


class LoopOutcome(BaseModel):
    """Result of `RightsizingLoop`."""

    result: LoopResult
    reason: str = ""
    changes: list[str] = Field(default_factory=list)
    looks: int = Field(0, description="times the canary was examined")
    last_checks: list[SignalCheck] = Field(default_factory=list)
    signals: CanarySignals | None = None
    release_phase: str = ""
    summary: str = ""


# ---------------------------------------------------------------- verdicts


def oom_verdict(pods: PodSignals, settings: LoopSettings) -> SignalCheck:
    if pods.oom_kills > settings.max_oom_kills:
        where = ", ".join(pods.oom_pods[:3])
        return SignalCheck(name="oom", verdict=Verdict.FAIL,
                           reason=f"{pods.oom_kills} OOM kill(s) in the canary ({where}); limit {settings.max_oom_kills}")
    if pods.restarts > settings.max_restarts:
        return SignalCheck(name="oom", verdict=Verdict.FAIL,
                           reason=f"{pods.restarts} restart(s) in the canary; limit {settings.max_restarts}")
    if pods.pods == 0:
        return SignalCheck(name="oom", verdict=Verdict.INCONCLUSIVE, reason="no canary pod seen yet")
    return SignalCheck(name="oom", verdict=Verdict.PASS,
                       reason=f"no OOM kill, {pods.restarts} restart(s) in {pods.pods} canary pod(s)")


def throttling_verdict(ratio: float | None, settings: LoopSettings) -> SignalCheck:
    if ratio is None or math.isnan(ratio):
        return SignalCheck(name="throttling", verdict=Verdict.INCONCLUSIVE, reason="no CPU throttling series")
    verdict = Verdict.FAIL if ratio > settings.max_throttled_ratio else Verdict.PASS
    return SignalCheck(name="throttling", verdict=verdict,
                       reason=f"CPU throttled {ratio:.0%} of periods (max {settings.max_throttled_ratio:.0%})")


def latency_verdict(canary_ms: float | None, stable_ms: float | None, settings: LoopSettings) -> SignalCheck:
    if canary_ms is None or math.isnan(canary_ms):
        return SignalCheck(name="latency", verdict=Verdict.INCONCLUSIVE, reason="no canary latency measured yet")
    if settings.latency_p95_max_ms is not None and canary_ms > settings.latency_p95_max_ms:
        return SignalCheck(name="latency", verdict=Verdict.FAIL,
                           reason=f"canary p95 {canary_ms:.0f} ms above {settings.latency_p95_max_ms:g} ms")
    if settings.max_latency_ratio is not None and stable_ms is not None and stable_ms > 0 and not math.isnan(stable_ms):
        if canary_ms > settings.max_latency_ratio * stable_ms:
            return SignalCheck(name="latency", verdict=Verdict.FAIL,
                               reason=f"canary p95 {canary_ms:.0f} ms > {settings.max_latency_ratio:g} x stable "
                                      f"{stable_ms:.0f} ms")
    return SignalCheck(name="latency", verdict=Verdict.PASS, reason=f"canary p95 {canary_ms:.0f} ms")


def loop_verdict(signals: CanarySignals, settings: LoopSettings) -> LoopDecision:
    """FAIL if any check fails; PASS only if all pass; else INCONCLUSIVE."""
    checks = [oom_verdict(signals.pods, settings), throttling_verdict(signals.throttled_ratio, settings),
              latency_verdict(signals.latency_p95_ms, signals.stable_latency_p95_ms, settings)]
    verdicts = {c.verdict for c in checks}
    if Verdict.FAIL in verdicts:
        return LoopDecision(verdict=Verdict.FAIL, checks=checks)
    # throttling has no series where no CPU limit is set: that is not a reason to hold
    needed = [c for c in checks if c.name != "throttling"]
    if all(c.verdict is Verdict.PASS for c in needed):
        return LoopDecision(verdict=Verdict.PASS, checks=checks)
    return LoopDecision(verdict=Verdict.INCONCLUSIVE, checks=checks)


def window_verdict(decisions: list[LoopDecision]) -> Verdict:
    """Over the whole window: FAIL at the first failure; PASS if at least one look passed and none failed."""
    if any(d.verdict is Verdict.FAIL for d in decisions):
        return Verdict.FAIL
    return Verdict.PASS if any(d.verdict is Verdict.PASS for d in decisions) else Verdict.INCONCLUSIVE


# ---------------------------------------------------------------- Prometheus


THROTTLING, CANARY_LATENCY, STABLE_LATENCY = "cpu-throttled-ratio", "canary-latency-p95", "stable-latency-p95"


def signal_queries(request: LoopInput, *, candidate: str, canary_version: str, stable_version: str) -> list[CheckQuery]:
    """The Prometheus side of a look at the canary: CFS throttling of the candidate's pods (cAdvisor series) and
    the p95 latency of the candidate and of the stable version (Istio, as the release's own analysis reads it)."""
    s = request.settings
    scope = QueryScope(service=request.service, namespace=request.namespace, version=canary_version,
                       region=request.region, region_label=s.region_label, window=s.rate_window)
    pods = (f'{{namespace="{request.namespace}",pod=~"{candidate}-.*",container!="",container!="POD"'
            f'{region_selector(scope)}}}')
    throttled = (f"sum(rate(container_cpu_cfs_throttled_periods_total{pods}[{s.rate_window}]))"
                 f" / sum(rate(container_cpu_cfs_periods_total{pods}[{s.rate_window}]))")
    bound = Threshold(max=s.max_throttled_ratio)
    latency_bound = Threshold(max=s.latency_p95_max_ms or 1e12)
    return [
        CheckQuery(name=THROTTLING, query=throttled, threshold=bound),
        CheckQuery(name=CANARY_LATENCY, query=latency_p95_query(scope), threshold=latency_bound, unit="ms"),
        CheckQuery(name=STABLE_LATENCY, query=latency_p95_query(scope.model_copy(update={"version": stable_version})),
                   threshold=latency_bound, unit="ms"),
    ]


def signals_from(pods: PodSignals, measured: dict[str, Measurement]) -> CanarySignals:
    def value(name: str) -> float | None:
        m = measured.get(name)
        return m.value if m is not None and m.has_value else None

    return CanarySignals(pods=pods, throttled_ratio=value(THROTTLING), latency_p95_ms=value(CANARY_LATENCY),
                         stable_latency_p95_ms=value(STABLE_LATENCY))


# ---------------------------------------------------------------- pods


def pod_signals(pods: list[JsonObject], containers: set[str] | None = None) -> PodSignals:
    """Restarts and OOM kills of the candidate's containers, from each pod's `status.containerStatuses`
    (`restartCount`, `lastState.terminated.reason`, `state.terminated.reason`) as a real cluster reports them."""
    found = PodSignals(pods=len(pods))
    for pod in pods:
        name = (pod.get("metadata") or {}).get("name", "")
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if containers and status.get("name") not in containers:
                continue
            found.restarts += int(status.get("restartCount") or 0)
            reasons = {((status.get(key) or {}).get("terminated") or {}).get("reason") for key in ("lastState", "state")}
            if "OOMKilled" in reasons:
                found.oom_kills += 1
                found.oom_pods.append(f"{name}/{status.get('name', '')}")
    return found


# ---------------------------------------------------------------- what changes


def cpu_quantity(cores: float) -> str:
    return f"{max(1, math.ceil(round(cores * 1000, 6)))}m"


def memory_quantity(size: float) -> str:
    return f"{max(1, math.ceil(round(size / 2**20, 6)))}Mi"


def recommended_resources(rec: ContainerRecommendation) -> ContainerResources | None:
    """The recommendation as quantities; only the values it gives (a CPU limit it does not recommend stays as it
    is: the loop never removes a limit). None when it recommends nothing."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if rec.cpu_request is not None:
        requests["cpu"] = cpu_quantity(rec.cpu_request)
    if rec.cpu_limit is not None:
        limits["cpu"] = cpu_quantity(rec.cpu_limit)
    if rec.memory_request is not None:
        requests["memory"] = memory_quantity(rec.memory_request)
    if rec.memory_limit is not None:
        limits["memory"] = memory_quantity(rec.memory_limit)
    if not requests and not limits:
        return None
    return ContainerResources.model_validate({"requests": requests, "limits": limits})


def current_resources(template: JsonObject) -> dict[str, ContainerResources]:
    found = {}
    for container in (template.get("spec") or {}).get("containers") or []:
        res = container.get("resources") or {}
        found[container.get("name", "")] = ContainerResources.model_validate(
            {kind: {k: str(v) for k, v in (res.get(kind) or {}).items() if k in ("cpu", "memory")}
             for kind in ("requests", "limits")})
    return found


def resource_changes(current: dict[str, ContainerResources], wanted: dict[str, ContainerResources]) -> list[str]:
    """One line per value that differs, e.g. `app: limits.memory 512Mi -> 64Mi`; unknown containers raise."""
    lines = []
    for name, res in sorted(wanted.items()):
        if name not in current:
            raise ValueError(f"no container {name!r} in the Deployment (containers: {sorted(current)})")
        now = current[name]
        for kind in ("requests", "limits"):
            for key, value in sorted(getattr(res, kind).items()):
                before = getattr(now, kind).get(key)
                if before != value:
                    lines.append(f"{name}: {kind}.{key} {before or '(none)'} -> {value}")
    return lines


def candidate_version(stable_version: str, resources: dict[str, ContainerResources]) -> str:
    """The version label of the rightsizing candidate: `<stable>-rs-<hash of the resources>` (a valid label
    value, distinct from stable so the canary subset selects only the candidate's pods)."""
    digest = hashlib.sha256(json.dumps({k: v.as_json() for k, v in sorted(resources.items())},
                                       sort_keys=True).encode()).hexdigest()[:8]
    base = re.sub(r"-rs-[0-9a-f]{8}$", "", stable_version or "v")
    return f"{base[:50].rstrip('-_.')}-rs-{digest}"


def loop_summary(outcome: LoopOutcome, service: str, region: str) -> str:
    what = {"rolled_out": "rolled out", "reverted": "reverted", "unchanged": "nothing to change",
            "refused": "refused"}[outcome.result]
    return f"rightsizing {service} in {region}: {what}" + (f": {outcome.reason}" if outcome.reason else "")
