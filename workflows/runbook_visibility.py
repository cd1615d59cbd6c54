"""What the Temporal Web UI shows of a runbook run: search attributes (RunbookName, Target*, Trigger, Phase)
and the current details line (`**name** on ns/svc — running, 3/10 steps done`).

Plain functions over the run's data; passed through the workflow sandbox (no module state).
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from pitstop.runbook.run_state import Phase

SA_KEYS = {
    "runbook": SearchAttributeKey.for_keyword("RunbookName"),
    "service": SearchAttributeKey.for_keyword("TargetService"),
    "namespace": SearchAttributeKey.for_keyword("TargetNamespace"),
    "region": SearchAttributeKey.for_keyword("TargetRegion"),
    "trigger": SearchAttributeKey.for_keyword("Trigger"),
    "phase": SearchAttributeKey.for_keyword("Phase"),
}


def upsert_run_attributes(*, runbook: str, trigger: str, target: dict[str, str]) -> None:
    """The attributes that never change during a run: which runbook, what started it, on what target."""
    attributes = [SA_KEYS["runbook"].value_set(runbook), SA_KEYS["trigger"].value_set(trigger or "ui")]
    for name in ("service", "namespace", "region"):
        if target.get(name):
            attributes.append(SA_KEYS[name].value_set(target[name]))
    workflow.upsert_search_attributes(attributes)


def upsert_phase(phase: Phase) -> None:
    workflow.upsert_search_attributes([SA_KEYS["phase"].value_set(phase.value)])


def details_text(
    *, runbook: str, target: dict[str, str], phase: Phase, done: int, total: int, dry_run: bool, error: str
) -> str:
    """The run's current details (markdown) as the Web UI shows them."""
    where = "/".join(v for v in (target.get("namespace"), target.get("service")) if v)
    return (
        f"**{runbook}**{' on ' + where if where else ''} — {phase.value}, "
        f"{done}/{total} steps done{' (dry run)' if dry_run else ''}"
        + (f"\n\n{error}" if error else "")
    )
