"""The runbook catalog activity: loading runbooks from disk (the lease activities are in `activities/leases.py`).

`RunbookCatalog(runbooks_dir, reach=...)`: `runbook.load` reads + validates a runbook by name (workflows cannot do
file I/O) and resolves the run's inputs. Validation includes the worker's limits on runbook authors (`reach`: env
var allowlist, allowed hosts, debug steps). Invalid runbooks and inputs are non-retryable domain errors.
"""

from __future__ import annotations

from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from pitstop.runbook.reach import AuthorReach
from pitstop.runbook.request import LoadedRunbook, LoadRunbookRequest
from pitstop.runbook.validation import RunbookInvalid, load_runbook_file, refusal_message, resolve_inputs


class RunbookCatalog:
    def __init__(self, runbooks_dir: Path, *, reach: AuthorReach) -> None:
        self.runbooks_dir = Path(runbooks_dir)
        self.reach = reach

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
        return LoadedRunbook(runbook=runbook, inputs=inputs, file=str(path))

    def activities(self) -> list:
        return [self.load]
