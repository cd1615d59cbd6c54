"""What starts a runbook run and what it returns: one simple JSON object an operator can type into the
Temporal Web UI's start form, e.g. `{"runbook": "hello", "inputs": {"name": "fleet"}}`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

RUNBOOK_WORKFLOW = "Runbook"  # Temporal workflow type name of the interpreter


class RunbookRequest(BaseModel):
    runbook: str = Field(description="runbook name (file runbooks/<name>.yaml)")
    inputs: dict[str, Any] = Field(default_factory=dict)
    dry_run: bool = False
    trigger: str = Field("ui", description="cli | ui | alert | schedule | runbook")
    started_by: str = ""
    held_leases: list[str] = Field(
        default_factory=list, description="lease ids already held by a parent run (a child does not wait on them)"
    )


class RunbookOutcome(BaseModel):
    runbook: str
    status: str = Field(description="succeeded | failed | aborted (the final phase)")
    outputs: dict[str, Any] = Field(default_factory=dict, description="step outputs by step id")
    steps: dict[str, str] = Field(default_factory=dict, description="final state of each step")
    summaries: dict[str, str] = Field(default_factory=dict, description="one line per step (dry run: what it would do)")
    error: str = ""
    dry_run: bool = False


class LoadRunbookRequest(BaseModel):
    """Input of the `runbook.load` activity: resolve a runbook by name and check the run's inputs."""

    runbook: str
    inputs: dict[str, Any] = Field(default_factory=dict)


class LoadedRunbook(BaseModel):
    """The validated typed tree the interpreter walks, with the run's inputs resolved (defaults applied)."""

    runbook: "Runbook"
    inputs: dict[str, Any]
    file: str


from .model import Runbook  # noqa: E402  (after the models, to keep this module's public names first)

LoadedRunbook.model_rebuild()
