"""The authenticated pitstop API, served by the webhook process beside `/alerts` (workers/webhook.py).

Every operator action goes through here (the CLI's `run`, `approve`, `pause`, `resume`, `abort`, `release
promote|rollback|abort`, `incident approve`, `schedules apply|pause|unpause|trigger|delete`, `chaos run|abort`,
`capacity apply --apply` call it):

    POST /api/v1/runs                          {"runbook", "inputs", "dry_run", "id"}      start
    POST /api/v1/runs/<id>/approve             {"step", "approved", "comment"}            approve / reject
    POST /api/v1/runs/<id>/pause|resume|abort  {"reason"}
    POST /api/v1/releases/<id>/promote         {"comment"}
    POST /api/v1/releases/<id>/rollback|abort  {"reason"}
    POST /api/v1/incidents/<id>/approve        {"approved", "comment"}
    POST /api/v1/schedules/<id>/pause|unpause|trigger|delete  {"reason"}
    POST /api/v1/schedules                     {"file", "text"}                           apply a schedules file
    POST /api/v1/chaos                         {"request", "id"}                          start a chaos run
    POST /api/v1/chaos/<id>/abort              {"reason"}
    POST /api/v1/rightsizing                   LoopInput                                  start a rightsizing loop
    GET  /api/v1/whoami                        the verified identity

(ids are percent-encoded path segments). Each request: (1) the bearer credential is verified
(workers/identity.py: an OIDC ID token or a token from the local token file) from the headers, before the body
is read — 401 otherwise; (2) the policy (`pitstop.access.AccessPolicy`) is asked about the action, the runbook
and the target as Temporal records them — 403 with the reason otherwise; (3) only then pitstop calls Temporal,
putting the verified subject into the update, signal or start input (workers/api_workflow_actions.py: chaos,
rightsizing, the schedules file). An action that touches several targets or schedules asks the policy once for
each, and every answer must allow it. Without a policy every action is refused (fail closed).

Audit: every decision is one structured JSON line on the logger `pitstop.api.audit` —
`{"event": "access.denied"|"access.allowed", "subject", "method", "groups", "action", "runbook", "target",
"object", "reason", "rule", "remote"}` (denials at WARNING). A credential is never logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from pydantic import BaseModel, ValidationError

from pitstop.access import AccessDecision, AccessPolicy, AccessRequest, Identity
from pitstop.identity import CredentialRefused

from .api_actions import ACTIONS, COLLECTION_OPS, ActionFailed, ApiActions, Operation, body_model
from .asgi_body import BodyRefused, read_bounded_body
from .identity import Authenticator

audit_log = logging.getLogger("pitstop.api.audit")
log = logging.getLogger("pitstop.api")

PREFIX = "/api/v1/"
KINDS = ("runs", "releases", "incidents", "schedules", "chaos", "rightsizing")
MAX_BODY_BYTES = 256 * 1024

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ApiRefused(Exception):
    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or []


def route(method: str, raw_path: str) -> Operation | str | None:
    """`POST /api/v1/runs/<id>/approve` -> Operation; `GET /api/v1/whoami` -> "whoami"; not ours -> None.
    Raises ApiRefused for an API path that names no action."""
    if not raw_path.startswith(PREFIX):
        return None
    parts = [unquote(p) for p in raw_path[len(PREFIX):].split("/")]
    if parts == ["whoami"]:
        return "whoami" if method == "GET" else _refuse_method("GET")
    if not parts or parts[0] not in KINDS:
        return None  # e.g. /api/v1/alerts: the webhook's
    if method != "POST":
        _refuse_method("POST")
    if len(parts) == 1 and parts[0] in COLLECTION_OPS:
        return Operation(parts[0], None, COLLECTION_OPS[parts[0]])
    if len(parts) == 3 and parts[1] and (parts[0], parts[2]) in ACTIONS and parts[2] not in ("start", "apply"):
        return Operation(parts[0], parts[1], parts[2])
    raise ApiRefused(404, f"no such action {raw_path!r}; see `pitstop --help` or docs/security.md")


def _refuse_method(allowed: str) -> Any:
    raise ApiRefused(405, f"use {allowed}", [(b"allow", allowed.encode())])


def audit(event: str, *, identity: Identity | None, request: AccessRequest | None, operation: Operation | None,
          reason: str, rule: str | None = None, remote: str = "") -> None:
    record = {
        "event": event,
        "subject": identity.subject if identity else None,
        "method": identity.method if identity else None,
        "groups": sorted(identity.groups) if identity else [],
        "action": request.action.value if request else (f"{operation.kind}.{operation.op}" if operation else None),
        "runbook": request.runbook if request else None,
        "target": request.target.model_dump(exclude_none=True) if request else None,
        "object": operation.object_id if operation else None,
        "reason": reason, "rule": rule, "remote": remote,
    }
    (audit_log.warning if event == "access.denied" else audit_log.info)(json.dumps(record, sort_keys=True))


class OperatorApi:
    """ASGI: `/api/v1/<runs|releases|incidents|schedules|chaos|rightsizing>/...` and `/api/v1/whoami` here, the
    rest to `app`."""

    def __init__(self, app: ASGIApp, *, authenticator: Authenticator, policy: AccessPolicy | None,
                 actions: ApiActions) -> None:
        self.app = app
        self.authenticator = authenticator
        self.policy = policy
        self.actions = actions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path = (scope.get("raw_path") or scope.get("path", "").encode()).decode("latin-1").split("?")[0]
        try:
            operation = route(scope.get("method", ""), raw_path)
        except ApiRefused as refused:
            await _answer(send, refused.status, {"error": refused.message}, refused.headers)
            return
        if operation is None:
            await self.app(scope, receive, send)
            return
        try:
            status, answer = await self._handle(scope, receive, operation)
            headers: list[tuple[bytes, bytes]] = []
        except ApiRefused as refused:
            status, answer, headers = refused.status, {"error": refused.message}, refused.headers
        except Exception as exc:  # noqa: BLE001 - one bad request never takes the process down
            log.exception("unexpected error in the pitstop API")
            status, answer, headers = 500, {"error": f"internal error: {type(exc).__name__}"}, []
        await _answer(send, status, answer, headers)

    async def _handle(self, scope: Scope, receive: Receive, operation: Operation | str) -> tuple[int, dict[str, Any]]:
        headers = {k.lower(): v for k, v in scope.get("headers") or []}
        remote = str((scope.get("client") or ("", 0))[0])
        op = operation if isinstance(operation, Operation) else None
        try:
            identity = await self.authenticator.identify(
                (headers.get(b"authorization") or b"").decode("latin-1") or None)
        except CredentialRefused as exc:
            audit("access.denied", identity=None, request=None, operation=op, reason=exc.reason, remote=remote)
            raise ApiRefused(401, f"authentication failed: {exc.reason}",
                             [(b"www-authenticate", b'Bearer realm="pitstop"'), (b"connection", b"close")]) from None
        if op is None:
            return 200, {"subject": identity.subject, "groups": sorted(identity.groups), "method": identity.method}
        body = await _parse_body(receive, body_model(op))
        try:
            requests = await self.actions.access_requests(identity, op, body)
        except ActionFailed as exc:
            raise ApiRefused(exc.status, exc.message) from None
        decisions = [(request, self._decide(request)) for request in requests]
        for request, decision in decisions:  # the first refusal is audited and answered; nothing is done
            if not decision.allowed:
                audit("access.denied", identity=identity, request=request, operation=op, reason=decision.reason,
                      rule=decision.rule, remote=remote)
                raise ApiRefused(403, f"refused by the access policy: {decision.reason}")
        for request, decision in decisions:
            audit("access.allowed", identity=identity, request=request, operation=op, reason=decision.reason,
                  rule=decision.rule, remote=remote)
        try:
            return 200, {**await self.actions.perform(identity, op, body), "identity": identity.subject}
        except ActionFailed as exc:
            raise ApiRefused(exc.status, exc.message) from None

    def _decide(self, request: AccessRequest) -> AccessDecision:
        if self.policy is None:
            return AccessDecision(allowed=False, reason="no access policy is configured (every action is refused)")
        return self.policy.decide(request)


async def _parse_body(receive: Receive, model: type[BaseModel]) -> BaseModel:
    try:
        raw = await read_bounded_body(receive, MAX_BODY_BYTES)
    except BodyRefused as exc:
        raise ApiRefused(exc.status, exc.reason) from None
    try:
        return model.model_validate(json.loads(raw) if raw.strip() else {})
    except (ValueError, ValidationError) as exc:
        raise ApiRefused(422, f"invalid request body: {str(exc).splitlines()[0]}") from None


async def _answer(send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
    raw = json.dumps(body, default=str).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": raw})
