"""What starts a runbook run: one simple JSON object an operator can type into the Temporal Web UI.

Example: {"runbook": "hello", "inputs": {"name": "fleet"}}
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


class RunbookOutcome(BaseModel):
    runbook: str
    status: str
    outputs: dict[str, Any] = Field(default_factory=dict)
