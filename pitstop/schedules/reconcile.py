"""The reconcile decision: desired schedules (from the file) vs. the schedules Temporal has -> what to do.

Pure: `plan_changes(desired, existing)` compares what the file declares (`ScheduleEntry.declared`) with what
pitstop recorded on each schedule when it last applied it, and returns one change per schedule:
create (missing), update (its declaration changed), delete (pitstop created it, it left the file),
unchanged, or conflict (a schedule with that id exists but pitstop did not create it: never touched).
A pause or unpause made outside the file (`pitstop schedules pause`) is left alone until the entry changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

ChangeKind = Literal["create", "update", "delete", "unchanged", "conflict"]


class ExistingSchedule(BaseModel):
    """What the reconcile decision needs to know about a schedule Temporal has."""

    id: str
    managed: bool = Field(description="created by pitstop (its memo says so)")
    declared: dict[str, Any] | None = Field(None, description="the declaration pitstop last applied to it")
    paused: bool = False
    note: str = ""


class ScheduleChange(BaseModel):
    id: str
    kind: ChangeKind
    fields: list[str] = Field(default_factory=list, description="declared fields that differ (update)")
    detail: str = ""

    def line(self) -> str:
        text = f"{self.kind:<9} {self.id}"
        if self.fields:
            text += f"  ({', '.join(self.fields)})"
        return text + (f"  — {self.detail}" if self.detail else "")


def changed_fields(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    old = old or {}
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def plan_changes(desired: Mapping[str, dict[str, Any]], existing: list[ExistingSchedule]) -> list[ScheduleChange]:
    """One change per desired schedule and per pitstop-created schedule, sorted by id."""
    found = {s.id: s for s in existing}
    changes: list[ScheduleChange] = []
    for sid, declared in desired.items():
        current = found.get(sid)
        if current is None:
            changes.append(ScheduleChange(id=sid, kind="create"))
        elif not current.managed:
            changes.append(ScheduleChange(
                id=sid, kind="conflict",
                detail="a schedule with this id exists and was not created by pitstop; left alone (rename the entry)",
            ))
        elif current.declared != declared:
            changes.append(ScheduleChange(id=sid, kind="update", fields=changed_fields(current.declared, declared)))
        else:
            outside = f"paused outside the file: {current.note or 'no note'}" if current.paused and not declared.get("paused") else ""
            changes.append(ScheduleChange(id=sid, kind="unchanged", detail=outside))
    for current in existing:
        if current.managed and current.id not in desired:
            changes.append(ScheduleChange(id=current.id, kind="delete", detail="no longer in the file"))
    return sorted(changes, key=lambda c: c.id)
