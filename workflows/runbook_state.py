"""The state of one runbook run (`RunState`): everything the interpreter knows about it, and the views built
from it — the `status` query, the outcome, the expression context, and the state handed over on continue-as-new.

One `RunState` per run; the module holds no state, so it is passed through the workflow sandbox (not
re-imported by every run). The phase is changed only through `set_phase`, which keeps the Web UI's view
(search attribute `Phase`, current details) in step.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pitstop.runbook import expressions as ex
    from pitstop.runbook.model import Runbook
    from pitstop.runbook.request import CarriedFanOut, CarriedRun, LoadedRunbook, RunbookOutcome, RunbookRequest
    from pitstop.policy.guard import AccessDenial
    from pitstop.runbook.run_state import ControlRequest, Phase, RunStatus, StepState, StepStatus

from .approvals import ApprovalGate
from .lease import LeaseHolderSide
from .runbook_visibility import details_text, upsert_phase, upsert_run_attributes
from .saga import Saga

_DONE = (StepState.SUCCEEDED, StepState.SKIPPED)


class RunState:
    def __init__(self, request: RunbookRequest, *, started_at: datetime) -> None:
        self.request = request
        self.phase = Phase.LOADING
        self.paused = False
        self.abort: ControlRequest | None = None
        self.runbook: Runbook | None = None
        self.loaded: LoadedRunbook | None = None
        self.inputs: dict[str, Any] = {}
        self.steps: dict[str, StepStatus] = {}
        self.target: dict[str, str] = {}
        self.error = ""
        self.tick = 0  # bumped by every message and finished step: wakes the loops waiting on it
        self.approvals = ApprovalGate()
        self.lease = LeaseHolderSide()
        self.saga = Saga()
        self.waiting_approvals = 0
        self.started_at = started_at
        self.run_number = 1
        self.fan_outs: dict[str, CarriedFanOut] = {}  # for_each steps stopped part-way, by step id
        self.suspended: set[str] = set()  # ... of which these stopped in this run (continue-as-new due)
        self.skipped = False  # a scheduled run whose target was busy (pitstop.schedules.skips)
        self.denials: list[AccessDenial] = []  # updates the policy refused (signal `access_denied`), newest last
        self._details = ""  # the current details last published

    # ------------------------------------------------------------ start, continue-as-new

    def setup(self, loaded: LoadedRunbook) -> None:
        """A fresh run: the runbook as loaded and validated by the `runbook.load` activity."""
        self.loaded, self.runbook, self.inputs = loaded, loaded.runbook, loaded.inputs
        self.steps = {s.id: StepStatus(id=s.id, uses=s.uses) for s in loaded.runbook.steps}
        if loaded.runbook.target:
            context = {"inputs": self.inputs}
            target = loaded.runbook.target.model_dump()
            self.target = {k: str(ex.render(v, context) or "") for k, v in target.items()}
            self.target["cluster"] = self.target["cluster"] or self.target["region"]
        self._upsert_run_attributes()
        self.set_phase(Phase.LOADING)

    def restore(self, carried: CarriedRun) -> None:
        """Resume from the state the previous run of the chain handed over (no load, no lease request)."""
        self.loaded, self.runbook, self.inputs = carried.loaded, carried.loaded.runbook, carried.loaded.inputs
        self.steps = {s.id: s for s in carried.steps}
        self.target = dict(carried.target)
        self.saga.restore(carried.loaded.runbook, carried.saga)
        self.paused = carried.paused
        self.lease.restore(lease_id=carried.lease_id, requested=carried.lease_requested, grant=carried.lease_grant)
        self.approvals.decisions = dict(carried.decisions)
        self.error = carried.error
        self.started_at = carried.started_at or workflow.info().start_time
        self.run_number = len(carried.earlier_runs) + 1
        self.fan_outs = {f.step_id: f for f in carried.fan_outs}
        self._upsert_run_attributes()
        workflow.logger.info(
            "runbook %s continues (run %d of the chain; %d earlier history events)",
            carried.loaded.runbook.name, self.run_number, carried.earlier_events,
        )

    def carry(self) -> RunbookRequest:
        """The next run's input: this request plus the whole interpreter state."""
        if self.loaded is None:
            raise ApplicationError("internal error: continue-as-new before the runbook was loaded", non_retryable=True)
        info = workflow.info()
        previous = self.request.carried
        carried = CarriedRun(
            loaded=self.loaded, steps=list(self.steps.values()), target=self.target, saga=self.saga.carry(),
            paused=self.paused, lease_id=self.lease.lease_id, lease_requested=self.lease.requested,
            lease_grant=self.lease.grant, decisions=dict(self.approvals.decisions), error=self.error,
            started_at=self.started_at,
            earlier_runs=(previous.earlier_runs if previous else []) + [info.run_id],
            earlier_events=(previous.earlier_events if previous else 0) + info.get_current_history_length(),
            fan_outs=list(self.fan_outs.values()),
        )
        return self.request.model_copy(update={"carried": carried})

    def history_too_long(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() >= self.request.history_limit

    # ------------------------------------------------------------ questions and small changes

    def failed(self) -> bool:
        return any(s.state == StepState.FAILED for s in self.steps.values())

    def wake(self) -> None:
        self.tick += 1

    def check_active(self, action: str) -> None:
        """Reject a control message (update validator) once the run is ending."""
        if self.phase.final or self.phase == Phase.COMPENSATING or self.abort is not None:
            raise ValueError(f"cannot {action}: the run is {self.phase.value}")

    def context(self, item: Any = None) -> dict[str, Any]:
        """What expressions see: inputs, every step's status and outputs, the fan-out item, the run."""
        return {
            "inputs": self.inputs,
            "steps": {sid: {"status": st.state.value, "outputs": st.outputs} for sid, st in self.steps.items()},
            "item": item,
            "run": {"id": workflow.info().workflow_id, "dry_run": self.request.dry_run, "runbook": self.request.runbook},
        }

    # ------------------------------------------------------------ phase

    def refresh_phase(self) -> None:
        if self.phase.final or self.phase in (Phase.LOADING, Phase.WAITING_FOR_LEASE, Phase.COMPENSATING):
            return
        if self.waiting_approvals:
            self.set_phase(Phase.WAITING_FOR_APPROVAL)
        elif self.paused:
            self.set_phase(Phase.PAUSED)
        else:
            self.set_phase(Phase.RUNNING)

    def set_phase(self, phase: Phase) -> None:
        changed = phase != self.phase or phase == Phase.LOADING
        self.phase = phase
        if changed:
            upsert_phase(phase)
        details = details_text(
            runbook=self.request.runbook, target=self.target, phase=phase, dry_run=self.request.dry_run,
            done=sum(1 for s in self.steps.values() if s.state in _DONE), total=len(self.steps), error=self.error,
        )
        if details != self._details:  # unchanged text: nothing to publish
            self._details = details
            workflow.set_current_details(details)

    def _upsert_run_attributes(self) -> None:
        runbook = self.runbook.name if self.runbook else self.request.runbook
        upsert_run_attributes(runbook=runbook, trigger=self.request.trigger, target=self.target)

    # ------------------------------------------------------------ views

    def status(self) -> RunStatus:
        return RunStatus(
            workflow_id=workflow.info().workflow_id, runbook=self.request.runbook, phase=self.phase,
            paused=self.paused, dry_run=self.request.dry_run, target=self.target, lease_id=self.lease.lease_id,
            started_at=self.started_at, steps=list(self.steps.values()),
            approvals=list(self.approvals.waiting.values()), error=self.error, run_number=self.run_number,
            access_denials=[d.reason for d in self.denials],
        )

    def outcome(self) -> RunbookOutcome:
        return RunbookOutcome(
            runbook=self.request.runbook, status=self.phase.value, error=self.error, dry_run=self.request.dry_run,
            outputs={sid: st.outputs for sid, st in self.steps.items() if st.outputs is not None},
            steps={sid: st.state.value for sid, st in self.steps.items()},
            summaries={sid: st.summary or st.error for sid, st in self.steps.items()},
        )
