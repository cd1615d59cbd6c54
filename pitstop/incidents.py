"""Incidents: the models shared by the `Incident` workflow, its activities and the CLI, and the pure
rendering of an incident's timeline into a blameless postmortem draft (Markdown) with its MTTR.

An incident is one firing episode of one alert (`pitstop.alerts.incident_id`). Its live state
(`IncidentStatus`, the workflow's `status` query and its result) carries the timeline: alert received,
each decision and action, evidence, recovery or escalation.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, Field

from pitstop.alerts import Alert, AlertNotification
from pitstop.remediation import BreakerDecision, RemediationPlan, ServiceTarget

INCIDENT_WORKFLOW = "Incident"
BUDGET_WORKFLOW = "RemediationBudget"
ALERT_SIGNAL = "alert_notification"


class IncidentPhase(str, Enum):
    RECEIVED = "received"
    PLANNING = "planning"
    WAITING_FOR_APPROVAL = "waiting_for_approval"
    WAITING_FOR_LEASE = "waiting_for_lease"
    ACTING = "acting"
    VERIFYING = "verifying"
    ESCALATED = "escalated"  # humans own it now; the incident waits for the alert to resolve
    RECOVERED = "recovered"  # the alert resolved after pitstop acted
    RESOLVED = "resolved"  # the alert resolved without pitstop acting (before its action ran, or after escalation)
    CLOSED = "closed"  # gave up waiting for the alert to resolve

    @property
    def final(self) -> bool:
        return self in (IncidentPhase.RECOVERED, IncidentPhase.RESOLVED, IncidentPhase.CLOSED)


class IncidentStart(BaseModel):
    """Input of the Incident workflow (the alert itself arrives by the `alert_notification` signal)."""

    incident_id: str
    task_queue: str = Field(description="queue of the runbook interpreter (child workflows)")


class TimelineEntry(BaseModel):
    at: datetime
    kind: str = Field(description="alert | notification | plan | decision | lease | approval | action | "
                                  "verification | evidence | metrics | escalation | resolved | recovered | closed")
    message: str
    data: dict[str, Any] = Field(default_factory=dict)


class ActionRecord(BaseModel):
    rung: str
    runbook: str
    workflow_id: str
    started_at: datetime
    ended_at: datetime | None = None
    status: str = "running"  # running | succeeded | failed | aborted
    dry_run: bool = False
    summary: str = ""
    recovered: bool | None = None


class ApprovalDecision(BaseModel):
    approved: bool
    identity: str = ""
    comment: str = ""
    groups: list[str] = Field(default_factory=list, description="the caller's verified groups (set by the pitstop API)")


class IncidentStatus(BaseModel):
    incident_id: str
    phase: IncidentPhase = IncidentPhase.RECEIVED
    alert: Alert | None = None
    rule: str = ""
    target: ServiceTarget | None = None
    plan: RemediationPlan | None = None
    notifications: int = 0
    first_received_at: datetime | None = None
    resolved_at: datetime | None = None
    first_action_at: datetime | None = None
    actions: list[ActionRecord] = Field(default_factory=list)
    evidence: dict[str, Any] = Field(default_factory=dict, description=(
        "what the cluster showed about the target: a Deployment's pods and events, a node's conditions, pods "
        "and events, a VirtualService's routes"))
    metrics: list[dict[str, Any]] = Field(default_factory=list, description="metric snapshots")
    escalated: bool = False
    outcome: str = ""
    timeline: list[TimelineEntry] = Field(default_factory=list)

    @property
    def mttr_seconds(self) -> float | None:
        """Alert start -> alert resolved."""
        if self.alert is None or self.resolved_at is None:
            return None
        return max(0.0, (self.resolved_at - self.alert.starts_at).total_seconds())

    @property
    def delivered_to_first_action_seconds(self) -> float | None:
        if self.first_received_at is None or self.first_action_at is None:
            return None
        return max(0.0, (self.first_action_at - self.first_received_at).total_seconds())


# ---------------------------------------------------------------- activity inputs / outputs


class PlanRequest(BaseModel):
    alert: Alert


class PlanResult(BaseModel):
    plan: RemediationPlan | None = None
    reason: str = Field("", description="why there is no plan (no rule matched, labels missing)")
    max_open_seconds: float = Field(86_400.0, description="close the incident if the alert has not resolved by then")
    gather_evidence: bool = True
    alert_check_seconds: float = Field(
        60.0, description="while waiting for the alert to resolve, ask Alertmanager this often whether it is still "
                          "active (0 = never): gone twice in a row counts as resolved")


class AlertActiveRequest(BaseModel):
    alertname: str
    fingerprint: str


class AlertPresence(BaseModel):
    active: bool | None = Field(description="None: Alertmanager could not be asked")
    detail: str = ""


class ReserveAction(BaseModel):
    """Input of `incident.reserve_action`: ask the service's remediation budget for one action."""

    target_key: str
    action_key: str = Field(description="`<incident>/<rung>`: a retried reservation is granted once, not twice")
    max_per_hour: int
    coalesce_seconds: float = Field(
        0.0, description="another incident acted on this service this recently: do not stack a second action"
    )


class BudgetAction(BaseModel):
    at: datetime
    key: str


class BudgetState(BaseModel):
    """State of one service's `RemediationBudget` workflow (actions of the last hour); carried across continue-as-new."""

    target_key: str
    actions: list[BudgetAction] = Field(default_factory=list)


class ReserveResult(BreakerDecision):
    coalesced_with: str = Field("", description="action key of another incident's recent action on the service")
    coalesced_at: datetime | None = None


class MetricSnapshotRequest(BaseModel):
    promql: str
    label: str = ""
    max_series: int = 20


class MetricSnapshot(BaseModel):
    label: str = ""
    promql: str
    at: datetime | None = None
    series: list[dict[str, Any]] = Field(default_factory=list, description="[{metric: {...}, value: float}]")
    error: str = ""


class RecoveryCheckRequest(BaseModel):
    promql: str


class RecoveryCheck(BaseModel):
    recovered: bool | None = Field(description="None = no data / unavailable (inconclusive, never a pass)")
    value: float | None = None
    detail: str = ""


# ---------------------------------------------------------------- pure helpers


def alert_expression(generator_url: str) -> str | None:
    """The PromQL of an alert rule, read from its Prometheus `generatorURL` (`/graph?g0.expr=...`)."""
    if not generator_url:
        return None
    query = parse_qs(urlsplit(generator_url).query)
    values = query.get("g0.expr") or query.get("expr")
    return values[0].strip() if values and values[0].strip() else None


def first_notification_summary(note: AlertNotification) -> str:
    alert = note.alert
    summary = alert.annotations.get("summary") or alert.annotations.get("description") or ""
    return f"{alert.name} ({alert.severity}) {alert.status}" + (f": {summary}" if summary else "")


def _fmt(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%SZ") if at else "—"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def postmortem_markdown(status: IncidentStatus) -> str:
    """A blameless postmortem draft: summary, impact, timeline, what automation did, follow-ups."""
    alert = status.alert
    name = alert.name if alert else "unknown alert"
    target = status.target.key if status.target else "unknown service"
    lines = [f"# Postmortem draft: {name} on {target}", ""]
    lines += [
        "_Blameless draft generated by pitstop from the incident's workflow history. Edit freely._",
        "",
        "## Summary",
        "",
        f"- Incident: `{status.incident_id}` — outcome **{status.outcome or status.phase.value}**",
        f"- Alert: `{name}` (severity {alert.severity if alert else '?'})"
        + (f" — {alert.annotations.get('summary')}" if alert and alert.annotations.get("summary") else ""),
        f"- Started: {_fmt(alert.starts_at if alert else None)}; resolved: {_fmt(status.resolved_at)}",
        f"- MTTR (alert start → resolved): **{_duration(status.mttr_seconds)}**",
        f"- Alert delivered → first automated action: {_duration(status.delivered_to_first_action_seconds)}",
        f"- Remediation rule: {status.rule or 'none matched'}; escalated to humans: {'yes' if status.escalated else 'no'}",
        "",
        "## Impact",
        "",
    ]
    if alert:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()))
        lines.append(f"- Affected: {target} ({labels})")
        if alert.annotations.get("description"):
            lines.append(f"- {alert.annotations['description']}")
    lines.append(f"- Duration of the alert: {_duration(status.mttr_seconds)}")
    for snap in status.metrics:
        series = snap.get("series") or []
        shown = ", ".join(f"{s.get('value')}" for s in series[:5]) or snap.get("error") or "no data"
        lines.append(f"- Metric snapshot ({snap.get('label', '')}, {snap.get('at', '')}): `{snap.get('promql', '')}` = {shown}")
    lines += ["", "## Timeline (UTC)", "", "| time | event | details |", "|---|---|---|"]
    for entry in status.timeline:
        message = entry.message.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {entry.at.strftime('%H:%M:%S')} | {entry.kind} | {message} |")
    lines += ["", "## What automation did", ""]
    if not status.actions:
        lines.append("- pitstop took no remediation action.")
    for action in status.actions:
        verdict = {True: "recovered", False: "did not recover", None: "not verified"}[action.recovered]
        lines.append(
            f"- `{action.rung}`: runbook `{action.runbook}` ({action.workflow_id}) {action.status}"
            f"{' (dry run)' if action.dry_run else ''}, {_fmt(action.started_at)} → {_fmt(action.ended_at)}; {verdict}"
            + (f" — {action.summary}" if action.summary else "")
        )
    pods = status.evidence.get("pods") or []
    events = status.evidence.get("events") or []
    conditions = status.evidence.get("conditions") or []
    routes = status.evidence.get("routes") or []
    if pods or events or conditions or routes:
        lines += ["", "### Evidence gathered", ""]
        if status.evidence.get("summary"):
            lines.append(f"- {status.evidence['summary']} ({status.evidence.get('label', '')})")
        for condition in conditions:
            lines.append(f"- node condition {condition.get('type')}={condition.get('status')}"
                         + (f" ({condition.get('reason')}: {condition.get('message')})" if condition.get("reason") else ""))
        if status.evidence.get("weights"):
            weights = ", ".join(f"{k} {v}%" for k, v in status.evidence["weights"].items())
            lines.append(f"- route weights: {weights}")
        for pod in pods[:20]:
            lines.append(
                f"- pod {pod.get('name')}: {pod.get('phase')}, ready={pod.get('ready')}, restarts={pod.get('restarts')}"
                + (f", {pod.get('reason')}" if pod.get("reason") else "")
            )
        for event in events[:20]:
            lines.append(f"- event {event.get('type')} {event.get('reason')} on {event.get('object')}: {event.get('message')}")
    lines += [
        "",
        "## Follow-ups",
        "",
        "- [ ] Root cause: why did the service degrade? (link the change, config or dependency)",
        "- [ ] Was the alert early and precise enough? Tune its threshold / `for` duration if not.",
    ]
    if status.escalated:
        lines.append("- [ ] Automation could not fix this: add or improve a rung in `runbooks/remediation-catalog.yaml`.")
    if any(a.rung == "rollback" for a in status.actions):
        lines.append("- [ ] The last rollout was rolled back: fix forward and re-release through a canary.")
    lines.append("- [ ] Owners and due dates for each item above.")
    return "\n".join(lines) + "\n"
