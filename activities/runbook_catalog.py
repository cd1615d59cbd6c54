"""The runbook catalog activity: loading runbooks from disk (the lease activities are in `activities/leases.py`).

`RunbookCatalog(runbooks_dir, reach=...)`: `runbook.load` reads + validates a runbook by name (workflows cannot do
file I/O) and resolves the run's inputs. Validation includes the worker's limits on runbook authors (`reach`: env
var allowlist, allowed hosts, debug steps). Invalid runbooks and inputs are non-retryable domain errors.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from pitstop.access import AccessRequest, Action
from pitstop.identity.start_claims import run_target, verified_starter
from pitstop.policy import guard
from pitstop.runbook.model import Runbook
from pitstop.runbook.reach import AuthorReach
from pitstop.runbook.request import LoadedRunbook, LoadRunbookRequest, StartCheck
from pitstop.runbook.validation import RunbookInvalid, load_runbook_file, refusal_message, resolve_inputs


audit_log = logging.getLogger("pitstop.api.audit")


class RunbookCatalog:
    def __init__(self, runbooks_dir: Path, *, reach: AuthorReach, start_claim_key: Path | None = None) -> None:
        """`start_claim_key`: the secret the pitstop API signs start claims with (pitstop/identity/start_claims.py)."""
        self.runbooks_dir = Path(runbooks_dir)
        self.reach = reach
        self.start_claim_key = start_claim_key

    def find(self, name: str) -> Path:
        for suffix in (".yaml", ".yml"):
            path = self.runbooks_dir / f"{name}{suffix}"
            if path.is_file():
                return path
        known = sorted(p.stem for p in self.runbooks_dir.glob("*.y*ml"))
        raise ApplicationError(
            f"no runbook named {name!r} in {self.runbooks_dir} (known: {', '.join(known) or 'none'})",
            type="UnknownRunbook",
            non_retryable=True,
        )

    @activity.defn(name="runbook.load")
    def load(self, request: LoadRunbookRequest) -> LoadedRunbook:
        path = self.find(request.runbook)
        try:
            runbook = load_runbook_file(path, reach=self.reach)
            inputs = resolve_inputs(runbook, request.inputs, str(path))
        except RunbookInvalid as exc:
            raise ApplicationError(refusal_message(request.runbook, exc), type="RunbookInvalid", non_retryable=True) from exc
        if runbook.name != request.runbook:
            raise ApplicationError(
                f"{path}: the file declares name {runbook.name!r}; rename the file or the runbook",
                type="RunbookInvalid",
                non_retryable=True,
            )
        if request.start_check is not None:
            self.check_start(request.start_check, runbook, inputs)
        return LoadedRunbook(runbook=runbook, inputs=inputs, file=str(path))

    def check_start(self, check: StartCheck, runbook: Runbook, inputs: dict[str, object]) -> None:
        """The access policy the worker installed, asked whether the run's starter may start it (no policy
        installed: no check). Refused: a non-retryable AccessDenied, so the run ends at once with the reason."""
        policy = guard.installed()
        if policy is None:
            return
        identity, known = verified_starter(self._key(), check.claim, workflow_id=check.workflow_id,
                                           runbook=runbook.name)
        target = run_target(runbook.target.model_dump() if runbook.target else {}, inputs)
        decision = policy.decide(AccessRequest(identity=identity, action=Action.START, runbook=runbook.name,
                                               target=target))
        record = {"event": "access.allowed" if decision.allowed else "access.denied", "subject": identity.subject,
                  "method": identity.method, "groups": sorted(identity.groups), "action": Action.START.value,
                  "runbook": runbook.name, "target": target.model_dump(exclude_none=True),
                  "object": check.workflow_id, "reason": decision.reason, "rule": decision.rule,
                  "starter": known, "remote": "worker"}
        (audit_log.info if decision.allowed else audit_log.warning)(json.dumps(record, sort_keys=True))
        if not decision.allowed:
            raise ApplicationError(
                f"start refused by the access policy ({known}): {decision.reason}", record, type="AccessDenied",
                non_retryable=True)

    def _key(self) -> bytes | None:
        try:
            return self.start_claim_key.read_bytes().strip() if self.start_claim_key else None
        except FileNotFoundError:
            return None

    def activities(self) -> list:
        return [self.load]
