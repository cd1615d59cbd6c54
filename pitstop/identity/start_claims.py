"""Who started a run, as the workflow re-checks it: the pitstop API signs a claim into the run's memo.

A run the API starts carries the memo `pitstop.started_by`: the verified identity and an HMAC-SHA256 over the
workflow id, the runbook and that identity, keyed by a secret the API and the workers share
(`identity.start_claim_key_file`, default `<state_dir>/start-claims.key`, created by the API). The `runbook.load`
activity checks it when a top-level run starts (not a child run, not a scheduled one) and asks the access policy
whether that identity may start that runbook on that target; a run without a valid claim — started from the
Temporal Web UI or any other Temporal client — is asked about as `web-ui` (group `web-ui`). A refusal fails the
run at once with the reason. The claim is bound to its workflow id, so it cannot be copied onto another run.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from pitstop.access import Identity, Target
from pitstop.config import Settings

STARTED_BY_MEMO = "pitstop.started_by"
WEB_UI = Identity(subject="web-ui", groups=frozenset({"web-ui"}), method="unverified")


class StartClaim(BaseModel):
    subject: str
    groups: list[str]
    method: str
    signature: str


def _message(*, workflow_id: str, runbook: str, subject: str, groups: list[str], method: str) -> bytes:
    return "\n".join([workflow_id, runbook, subject, ",".join(sorted(groups)), method]).encode()


def sign_claim(key: bytes, *, workflow_id: str, runbook: str, identity: Identity) -> dict[str, Any]:
    groups = sorted(identity.groups)
    digest = hmac.new(key, _message(workflow_id=workflow_id, runbook=runbook, subject=identity.subject,
                                    groups=groups, method=identity.method), hashlib.sha256).hexdigest()
    return StartClaim(subject=identity.subject, groups=groups, method=identity.method, signature=digest).model_dump()


def verified_starter(key: bytes | None, claim: Any, *, workflow_id: str, runbook: str) -> tuple[Identity, str]:
    """The identity that started the run and how it is known: the claim's when its signature verifies,
    else `WEB_UI` with the reason the claim was not taken."""
    if claim is None:
        return WEB_UI, "no start claim (not started through the pitstop API)"
    try:
        parsed = StartClaim.model_validate(claim)
    except ValidationError:
        return WEB_UI, "malformed start claim"
    if key is None:
        return WEB_UI, "the worker has no start-claim key to verify the claim"
    expected = hmac.new(key, _message(workflow_id=workflow_id, runbook=runbook, subject=parsed.subject,
                                      groups=parsed.groups, method=parsed.method), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, parsed.signature) or parsed.method not in ("oidc", "token-file"):
        return WEB_UI, "the start claim's signature does not verify"
    method: Literal["oidc", "token-file"] = "oidc" if parsed.method == "oidc" else "token-file"
    return Identity(subject=parsed.subject, groups=frozenset(parsed.groups), method=method), "signed by the pitstop API"


def run_target(declared: dict[str, Any], inputs: dict[str, Any]) -> Target:
    """The run's target as the policy sees it: the runbook's `target:` rendered with the run's inputs."""
    from pitstop.runbook import expressions

    rendered = {k: expressions.render(v, {"inputs": inputs}) for k, v in declared.items()}
    return Target(**{k: (str(rendered[k]) if rendered.get(k) else None) for k in ("namespace", "service", "region")})


def start_claim_key_path(settings: Settings) -> Path:
    return settings.identity.start_claim_key_file or settings.state_dir / "start-claims.key"
