"""The remediation catalog and the pure decisions of incident remediation.

The catalog (`runbooks/remediation-catalog.yaml`) maps alerts to a *ladder* of remediation runbooks:
a rule matches on the alert name and labels, says how the affected service is read from the labels, and
lists rungs to climb one at a time (restart, roll back, scale out, shift traffic, cordon ...), each with a
recovery check. Per-rule policies: dry-run only, approval above a severity, a circuit breaker (maximum
actions per hour per service), and what to do while another run holds the service's lease.

Everything here is pure: `plan_remediation(catalog, alert)` -> `RemediationPlan` (what the incident
workflow carries), `rung_applies(...)`, `breaker_decision(...)`, `needs_approval(...)`. The budget's reservation rule
(dedup, coalescing, pruning, then the breaker) is in `pitstop.remediation_budget`.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pitstop import bounded_yaml
from pitstop.alerts import Alert, severity_rank
from pitstop.runbook.model import Duration
from pitstop.runbook.reach import AuthorReach

CATALOG_FILE = "remediation-catalog.yaml"
_PLACEHOLDER = re.compile(r"\$\{\s*(target|labels|annotations)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}")


class RemediationError(ValueError):
    """The catalog is invalid, or an alert lacks what its rule needs (e.g. the label naming the service)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Matcher(_Strict):
    """All conditions must hold: `alertname`, exact `labels`, regex `labels_re` (full match)."""

    alertname: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    labels_re: dict[str, str] = Field(default_factory=dict)

    @field_validator("labels_re")
    @classmethod
    def _compiles(cls, value: dict[str, str]) -> dict[str, str]:
        for label, pattern in value.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"labels_re.{label}: invalid regex {pattern!r}: {exc}") from exc
        return value

    def matches(self, labels: dict[str, str]) -> bool:
        if self.alertname is not None and labels.get("alertname") != self.alertname:
            return False
        if any(labels.get(k) != v for k, v in self.labels.items()):
            return False
        return all(re.fullmatch(p, labels.get(k, "")) for k, p in self.labels_re.items())


class LabelRef(_Strict):
    """A value read from an alert label; `regex` (first group, or group `value`) extracts part of it."""

    label: str | None = None
    regex: str | None = None
    value: str | None = Field(None, description="a constant instead of a label")
    default: str | None = None

    @model_validator(mode="after")
    def _source(self) -> LabelRef:
        if (self.label is None) == (self.value is None):
            raise ValueError("give exactly one of `label` and `value`")
        if self.regex is not None:
            try:
                compiled = re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"invalid regex {self.regex!r}: {exc}") from exc
            if compiled.groups < 1:
                raise ValueError(f"regex {self.regex!r} needs a capture group")
        return self

    def read(self, labels: dict[str, str]) -> str | None:
        if self.value is not None:
            return self.value
        raw = labels.get(self.label or "")
        if raw is None:
            return self.default
        if self.regex is None:
            return raw
        match = re.fullmatch(self.regex, raw)
        if match is None:
            return self.default
        return match.groupdict().get("value") or match.group(1)


TargetKind = Literal["Deployment", "Node", "VirtualService", "Region"]


class TargetSpec(_Strict):
    kind: TargetKind = Field("Deployment", description="what `service` names; the evidence gathered follows it")
    service: LabelRef
    namespace: LabelRef = Field(default_factory=lambda: LabelRef(value="default"))
    region: LabelRef = Field(default_factory=lambda: LabelRef(label="region"))


class ServiceTarget(BaseModel):
    """The service an incident is about; keys the lease and the circuit breaker."""

    service: str
    namespace: str
    region: str
    kind: TargetKind = "Deployment"

    @property
    def key(self) -> str:
        return f"{self.region}/{self.namespace}/{self.service}"


LeaseBusy = Literal["wait", "escalate"]


class Policy(_Strict):
    dry_run: bool = Field(False, description="only report what each rung would do")
    approval_above_severity: str | None = Field(
        None, description="alerts whose severity ranks above this need a human approval before each action"
    )
    approval_timeout: Duration = Field(900.0, description="no decision by then: escalate")
    approvers: list[str] = Field(default_factory=list, description="who may approve: `group:NAME` (a group of the access policy), `user:NAME` or a user name; empty = anyone the access policy allows")
    max_actions_per_hour: int = Field(3, ge=0, le=1000, description="circuit breaker per service")
    on_lease_busy: LeaseBusy = Field("wait", description="another run holds the service: wait, or escalate at once")
    lease_wait_timeout: Duration = Field(600.0, description="policy wait: escalate after this long")


class PolicyOverride(_Strict):
    dry_run: bool | None = None
    approval_above_severity: str | None = None
    approval_timeout: Duration | None = None
    approvers: list[str] | None = None
    max_actions_per_hour: int | None = Field(None, ge=0, le=1000)
    on_lease_busy: LeaseBusy | None = None
    lease_wait_timeout: Duration | None = None


RungCondition = Literal["always", "alert_after_rollout"]


class Rung(_Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")
    runbook: str = Field(description="remediation runbook run as a child workflow")
    inputs: dict[str, Any] = Field(default_factory=dict, description="values may use ${target.x} ${labels.x}")
    when: RungCondition = Field(
        "always", description="alert_after_rollout: only when the alert began after the service's last rollout"
    )
    rollout_window: Duration = Field(3600.0, description="alert_after_rollout: the rollout at most this long before")
    recovery_deadline: Duration | None = Field(None, description="wait this long for recovery; default the rule's")
    recovered_when: str | None = Field(None, description="PromQL; recovered when it returns a value > 0")


class Escalation(_Strict):
    url: str | None = Field(None, pattern=r"^https?://")
    url_env: str | None = Field(None, description="env var holding the pager/notify webhook URL")
    token_env: str | None = None


class Rule(_Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")
    description: str = ""
    match: Matcher
    target: TargetSpec
    ladder: list[Rung] = Field(min_length=1)
    policy: PolicyOverride = Field(default_factory=PolicyOverride)
    recovery_deadline: Duration | None = None
    recovered_when: str | None = None
    escalation: Escalation | None = None


class Defaults(_Strict):
    policy: Policy = Field(default_factory=Policy)
    recovery_deadline: Duration = 300.0
    poll_interval: Duration = Field(15.0, description="how often a `recovered_when` query is evaluated")
    escalation: Escalation | None = None
    gather_evidence: bool = Field(True, description="attach the service's pods and recent events to the incident")
    max_incident_duration: Duration = Field(86_400.0, description="close an incident whose alert never resolves")
    alert_check_interval: Duration = Field(
        60.0, ge=0, description="while an incident waits for its alert to resolve, ask Alertmanager this often "
                                "whether the alert is still active (a lost `resolved` notification); 0 = never")


class Catalog(_Strict):
    defaults: Defaults = Field(default_factory=Defaults)
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Catalog:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} is used twice")
            seen.add(rule.name)
            rung_names = [r.name for r in rule.ladder]
            if len(set(rung_names)) != len(rung_names):
                raise ValueError(f"rule {rule.name!r}: rung names must be unique")
        return self


# ---------------------------------------------------------------- plan (what the incident workflow carries)


class RungPlan(BaseModel):
    name: str
    runbook: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    when: RungCondition = "always"
    rollout_window_seconds: float = 3600.0
    recovery_deadline_seconds: float
    recovered_when: str | None = None


class RemediationPlan(BaseModel):
    rule: str
    target: ServiceTarget
    rungs: list[RungPlan]
    policy: Policy
    requires_approval: bool = False
    poll_interval_seconds: float = 15.0
    escalation: Escalation | None = None


def load_catalog(path: Path) -> Catalog:
    """Parse and validate a catalog file; errors name the file and the field."""
    try:
        data = bounded_yaml.load_file(path) or {}
    except bounded_yaml.YamlRefused as exc:
        raise RemediationError(f"{path}: cannot read the remediation catalog: {exc.reason} (line {exc.line})") from exc
    except OSError as exc:
        raise RemediationError(f"{path}: cannot read the remediation catalog: {exc}") from exc
    return parse_catalog(data, source=str(path))


def parse_catalog(data: Any, *, source: str = "catalog") -> Catalog:
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RemediationError(f"{source}: {where}: {first['msg']}") from exc


def reach_problems(catalog: Catalog, reach: AuthorReach) -> list[str]:
    """Escalation env vars and URLs of the catalog that the worker's `security.*` settings do not allow."""
    escalations = [("defaults.escalation", catalog.defaults.escalation)]
    escalations += [(f"rules.{rule.name}.escalation", rule.escalation) for rule in catalog.rules]
    problems: list[str] = []
    for where, escalation in escalations:
        if escalation is None:
            continue
        found = [(f"{where}.{name}", reach.env_problem(env)) for name, env in
                 (("url_env", escalation.url_env), ("token_env", escalation.token_env)) if env]
        if escalation.url:
            found.append((f"{where}.url", reach.url_problem(escalation.url)))
        problems += [f"{field}: {problem}" for field, problem in found if problem]
    return problems


def match_rule(catalog: Catalog, labels: dict[str, str]) -> Rule | None:
    """The first rule whose matcher accepts the labels."""
    return next((rule for rule in catalog.rules if rule.match.matches(labels)), None)


def resolve_target(rule: Rule, labels: dict[str, str]) -> ServiceTarget:
    values: dict[str, str] = {}
    for field_name in ("service", "namespace", "region"):
        ref: LabelRef = getattr(rule.target, field_name)
        value = ref.read(labels)
        if not value:
            source = f"label {ref.label!r}" + (f" (regex {ref.regex!r})" if ref.regex else "")
            raise RemediationError(f"rule {rule.name!r}: the alert has no {field_name}: {source} is missing or does not match")
        values[field_name] = value
    return ServiceTarget(kind=rule.target.kind, **values)


def render(value: Any, *, target: ServiceTarget, alert: Alert) -> Any:
    """Substitute `${target.service}`, `${labels.pod}`, `${annotations.summary}` in strings (recursively)."""
    if isinstance(value, str):
        def sub(match: re.Match[str]) -> str:
            scope, key = match.group(1), match.group(2)
            if scope == "target":
                return str(getattr(target, key, ""))
            source = alert.labels if scope == "labels" else alert.annotations
            return source.get(key, "")

        return _PLACEHOLDER.sub(sub, value)
    if isinstance(value, list):
        return [render(v, target=target, alert=alert) for v in value]
    if isinstance(value, dict):
        return {k: render(v, target=target, alert=alert) for k, v in value.items()}
    return value


def effective_policy(defaults: Policy, override: PolicyOverride) -> Policy:
    changes = {k: v for k, v in override.model_dump().items() if k in override.model_fields_set}
    return defaults.model_copy(update=changes)


def needs_approval(policy: Policy, severity: str) -> bool:
    """Approval is required when the alert's severity ranks strictly above the policy's threshold."""
    if policy.approval_above_severity is None:
        return False
    return severity_rank(severity) > severity_rank(policy.approval_above_severity)


def plan_remediation(catalog: Catalog, alert: Alert) -> RemediationPlan | None:
    """The plan for an alert, or None when no rule matches. Raises RemediationError when labels are lacking."""
    rule = match_rule(catalog, alert.labels)
    if rule is None:
        return None
    target = resolve_target(rule, alert.labels)
    policy = effective_policy(catalog.defaults.policy, rule.policy)
    deadline = rule.recovery_deadline if rule.recovery_deadline is not None else catalog.defaults.recovery_deadline
    rungs = [
        RungPlan(
            name=rung.name,
            runbook=rung.runbook,
            inputs=render(rung.inputs, target=target, alert=alert),
            when=rung.when,
            rollout_window_seconds=rung.rollout_window,
            recovery_deadline_seconds=rung.recovery_deadline if rung.recovery_deadline is not None else deadline,
            recovered_when=render(rung.recovered_when or rule.recovered_when, target=target, alert=alert),
        )
        for rung in rule.ladder
    ]
    return RemediationPlan(
        rule=rule.name,
        target=target,
        rungs=rungs,
        policy=policy,
        requires_approval=needs_approval(policy, alert.severity),
        poll_interval_seconds=catalog.defaults.poll_interval,
        escalation=rule.escalation or catalog.defaults.escalation,
    )


# ---------------------------------------------------------------- decisions during the incident


class RungApplicability(BaseModel):
    applies: bool
    reason: str


def rung_applies(rung: RungPlan, *, alert_started_at: datetime, last_rollout_at: datetime | None) -> RungApplicability:
    """`alert_after_rollout` rungs apply only when the service rolled out shortly before the alert began."""
    if rung.when == "always":
        return RungApplicability(applies=True, reason="applies to every alert of the rule")
    if last_rollout_at is None:
        return RungApplicability(applies=False, reason="no rollout of the service is known")
    if last_rollout_at > alert_started_at:
        return RungApplicability(
            applies=False, reason=f"the last rollout ({last_rollout_at:%H:%M:%S}Z) came after the alert began"
        )
    gap = (alert_started_at - last_rollout_at).total_seconds()
    if gap > rung.rollout_window_seconds:
        return RungApplicability(
            applies=False,
            reason=f"the last rollout was {gap:.0f}s before the alert, outside the {rung.rollout_window_seconds:.0f}s window",
        )
    return RungApplicability(applies=True, reason=f"the alert began {gap:.0f}s after the service's last rollout")


BREAKER_WINDOW = timedelta(hours=1)


class BreakerDecision(BaseModel):
    allowed: bool
    actions_last_hour: int
    retry_after_seconds: float = 0.0
    reason: str = ""


def breaker_decision(action_times: list[datetime], *, now: datetime, max_per_hour: int) -> BreakerDecision:
    """Circuit breaker: at most `max_per_hour` actions per service in any sliding hour."""
    window_start = now - BREAKER_WINDOW
    recent = sorted(t for t in action_times if t > window_start)
    if len(recent) < max_per_hour:
        return BreakerDecision(allowed=True, actions_last_hour=len(recent), reason="under the hourly limit")
    retry_after = (recent[len(recent) - max_per_hour] + BREAKER_WINDOW - now).total_seconds() if max_per_hour else 3600.0
    return BreakerDecision(
        allowed=False,
        actions_last_hour=len(recent),
        retry_after_seconds=max(0.0, retry_after),
        reason=f"circuit open: {len(recent)} actions on this service in the last hour (limit {max_per_hour})",
    )
