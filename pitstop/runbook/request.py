"""What starts a runbook run and what it returns: one simple JSON object an operator can type into the
Temporal Web UI's start form, e.g. `{"runbook": "hello", "inputs": {"name": "fleet"}}`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from pitstop.delivery.budget import ErrorBudgetCheck

RUNBOOK_WORKFLOW = "Runbook"  # Temporal workflow type name of the interpreter
DEFAULT_HISTORY_LIMIT = 10_000  # events; Temporal's hard limit is ~50k (and it suggests continuing at ~4k)


class RunbookRequest(BaseModel):
    runbook: str = Field(description="runbook name (file runbooks/<name>.yaml)")
    inputs: dict[str, Any] = Field(default_factory=dict)
    dry_run: bool = False
    trigger: str = Field("ui", description="cli | ui | alert | schedule | runbook")
    started_by: str = ""
    held_leases: list[str] = Field(
        default_factory=list, description="lease ids already held by a parent run (a child does not wait on them)"
    )
    history_limit: int = Field(
        DEFAULT_HISTORY_LIMIT, ge=50, le=40_000,
        description="continue-as-new between steps once this run's history has this many events "
        "(or when Temporal suggests it), so a long runbook never approaches Temporal's history limits",
    )
    error_budget: ErrorBudgetCheck | None = Field(
        None, description="check this SLO error budget before the first step; refused: the run does nothing "
        "(a scheduled run ends `skipped` with the reason). Set from a schedule's `error_budget:`",
    )
    carried: CarriedRun | None = Field(
        None, description="set by the engine when a run continues-as-new: the state the next run resumes from"
    )


class RunbookOutcome(BaseModel):
    runbook: str
    status: str = Field(description="succeeded | failed | aborted | skipped (the final phase)")
    outputs: dict[str, Any] = Field(default_factory=dict, description="step outputs by step id")
    steps: dict[str, str] = Field(default_factory=dict, description="final state of each step")
    summaries: dict[str, str] = Field(default_factory=dict, description="one line per step (dry run: what it would do)")
    error: str = ""
    dry_run: bool = False


class StartCheck(BaseModel):
    """A top-level run's start, for the access policy's re-check in `runbook.load` (pitstop/identity/start_claims.py)."""

    workflow_id: str
    claim: dict[str, Any] | None = Field(None, description="the memo `pitstop.started_by` the pitstop API signed")


class LoadRunbookRequest(BaseModel):
    """Input of the `runbook.load` activity: resolve a runbook by name and check the run's inputs."""

    runbook: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    start_check: StartCheck | None = Field(
        None, description="set for a top-level, unscheduled run: who started it is checked against the policy")


class LoadedRunbook(BaseModel):
    """The validated typed tree the interpreter walks, with the run's inputs resolved (defaults applied)."""

    runbook: "Runbook"
    inputs: dict[str, Any]
    file: str


class SagaEntry(BaseModel):
    """One recorded compensation (a successful call of a step with `compensate:`), in completion order."""

    step_id: str
    key: str
    item: Any = None
    outputs: Any = None


class CarriedFanOut(BaseModel):
    """A `for_each` step split across runs of a chain: what its earlier runs finished, what is left.

    Compact on purpose (it travels in every continue-as-new input): finished indexes as ranges, the finished
    items' outputs in index order, and only the items still to run (their indexes are the complement of
    `done` in `range(items_total)`). The step's `items_done` / `items_total` are in its carried `StepStatus`.
    """

    step_id: str
    items_total: int
    done: list[tuple[int, int]] = Field(
        default_factory=list, description="finished item indexes as inclusive ranges [first, last], ascending"
    )
    outputs: list[Any] = Field(default_factory=list, description="outputs of the finished items, in index order")
    remaining: list[Any] = Field(default_factory=list, description="the items not run yet, in index order")

    @staticmethod
    def ranges(indexes: list[int]) -> list[tuple[int, int]]:
        """Ascending indexes -> inclusive ranges: [0, 1, 2, 5] -> [(0, 2), (5, 5)]."""
        spans: list[tuple[int, int]] = []
        for index in indexes:
            if spans and spans[-1][1] == index - 1:
                spans[-1] = (spans[-1][0], index)
            else:
                spans.append((index, index))
        return spans

    def done_indexes(self) -> list[int]:
        return [i for first, last in self.done for i in range(first, last + 1)]

    def remaining_indexes(self) -> list[int]:
        done = set(self.done_indexes())
        return [i for i in range(self.items_total) if i not in done]


class CarriedRun(BaseModel):
    """Everything the interpreter keeps, handed from one run of a chain to the next on continue-as-new.

    Taken at a safe point: no step in flight (so no approval waiting either), lease held or not needed; a
    `for_each` step may be part-way (`fan_outs`): none of its items is in flight, the next run runs the rest.
    The runbook itself is carried too, so a run keeps the definition it started with.
    """

    loaded: LoadedRunbook
    steps: list[StepStatus]
    target: dict[str, str] = Field(default_factory=dict)
    saga: list[SagaEntry] = Field(default_factory=list, description="compensation stack, oldest first")
    paused: bool = False
    lease_id: str = ""
    lease_requested: bool = False
    lease_grant: LeaseGrant | None = None
    decisions: dict[str, ApprovalDecision] = Field(default_factory=dict, description="approval decisions so far")
    error: str = ""
    started_at: datetime | None = Field(None, description="when the first run of the chain started")
    earlier_runs: list[str] = Field(default_factory=list, description="run ids of the earlier runs, oldest first")
    earlier_events: int = Field(0, description="history events of the earlier runs together")
    fan_outs: list[CarriedFanOut] = Field(
        default_factory=list, description="for_each steps stopped part-way (their state stays running)"
    )


from .leases import LeaseGrant  # noqa: E402  (after the models, to keep this module's public names first)
from .model import Runbook  # noqa: E402
from .run_state import ApprovalDecision, StepStatus  # noqa: E402

LoadedRunbook.model_rebuild()
CarriedRun.model_rebuild()
RunbookRequest.model_rebuild()
