"""Per-target leases: at most one mutating runbook per (cluster, namespace, service) at a time.

The lease is a Temporal workflow (`TargetLease`, id `lease/<cluster>/<namespace>/<service>`): holders ask
with signal-with-start (through an activity), are granted FIFO by a signal back, and release with a signal;
the lease workflow also checks that its holder is still running, so a terminated holder frees the target.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

LEASE_WORKFLOW = "TargetLease"


def lease_id(*, cluster: str, namespace: str, service: str) -> str:
    return f"lease/{cluster or '-'}/{namespace or 'default'}/{service}"


class LeaseHolder(BaseModel):
    workflow_id: str
    run_id: str = ""
    runbook: str = ""
    policy: Literal["wait", "refuse"] = "wait"


class LeaseRequest(BaseModel):
    """Input of the `lease.request` activity (signal-with-start of the lease workflow)."""

    lease_id: str
    holder: LeaseHolder


class LeaseState(BaseModel):
    """Input of the lease workflow; carried across continue-as-new."""

    lease_id: str
    holder: LeaseHolder | None = None
    waiters: list[LeaseHolder] = Field(default_factory=list)
    check_seconds: float = Field(30.0, description="how often the holder is checked to be still running")
    grants: int = 0


class LeaseGrant(BaseModel):
    lease_id: str
    granted: bool
    message: str = ""


class HolderCheck(BaseModel):
    workflow_id: str
    run_id: str = ""
