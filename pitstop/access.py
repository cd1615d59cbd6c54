"""Who asks to do what, on which target: the models shared by authentication and the access policy.

An `Identity` is only ever built by code that verified a credential (an OIDC ID token checked against the
issuer's JWKS, or a token from the local token file); a name typed on a command line never becomes one.
The policy (`pitstop/policy/`) answers an `AccessRequest` with an `AccessDecision`; the authenticated pitstop
API enforces it before it talks to Temporal, and the workflows' update validators check it again.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field


class Action(StrEnum):
    """Every operator action pitstop authorises."""

    START = "start"  # start a runbook (also a release or a chaos experiment started as a runbook)
    APPROVE = "approve"  # approve or reject a runbook's approval step
    PAUSE = "pause"
    RESUME = "resume"
    ABORT = "abort"
    RELEASE_PROMOTE = "release.promote"
    RELEASE_ROLLBACK = "release.rollback"
    INCIDENT_APPROVE = "incident.approve"  # approve or reject an incident's remediation
    SCHEDULE_CHANGE = "schedule.change"  # pause, unpause, trigger or update a schedule


class Identity(BaseModel):
    """A verified caller: the subject and groups come from the credential, never from the caller's say-so."""

    model_config = ConfigDict(frozen=True)

    subject: str = Field(min_length=1, description="the user (OIDC `sub`/`email` claim, or the token file's user)")
    groups: frozenset[str] = Field(default=frozenset(), description="groups from the credential")
    method: Literal["oidc", "token-file", "unverified"] = Field(
        description="how the credential was verified (`unverified`: a run started outside the pitstop API, e.g. "
                    "from the Temporal Web UI, checked as the policy's `web-ui` subject)")


class Target(BaseModel):
    """What an action touches; a field the action does not name is None (a rule's pattern must then be `*`)."""

    model_config = ConfigDict(frozen=True)

    namespace: str | None = None
    service: str | None = None
    region: str | None = None


class AccessRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    identity: Identity
    action: Action
    runbook: str = Field(description="runbook name (for a release: `release`, for an incident: `incident`)")
    target: Target = Target()


class AccessDecision(BaseModel):
    """The policy's answer, with the reason that goes into the audit record."""

    model_config = ConfigDict(frozen=True)

    allowed: bool
    reason: str
    rule: str | None = Field(default=None, description="the id of the rule that decided, if one did")


class AccessPolicy(Protocol):
    """What the API and the update validators need from a policy (implemented by `pitstop/policy/`)."""

    def decide(self, request: AccessRequest) -> AccessDecision: ...
