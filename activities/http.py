"""HTTP activities: `http.call` (one request, expected status) — async, httpx, on the worker's event loop.

Secrets are resolved from the worker's environment by name (`header_env`, `url_env`) at call time, only from the
allowlisted variables (`security.env_allowlist`), and never appear in results or logs: reported headers are masked
(`pitstop.redaction`), URLs too, and the response excerpt is redacted (the secrets sent, credential-shaped values).
Every request's host is checked against `security.allowed_hosts` once the URL is known (it may come from an env
var or an expression, which validation cannot see). Non-GET calls carry an
`Idempotency-Key` header derived from the run and step, so a retried POST can be deduplicated by the server.
Connection errors, 5xx and 429 are transient (Temporal retries); any other unexpected status is a domain error.
"""

from __future__ import annotations

from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from pitstop.redaction import mask_headers, mask_url, redact_text
from pitstop.runbook.step_types import StepInvocation
from pitstop.steps.http import HttpCallArgs, HttpCallResult

from .clients import ActivityClients
from .idempotency import idempotency_key

EXCERPT_CHARS = 1000


def resolve_headers(clients: ActivityClients, headers: dict[str, str], header_env: dict[str, str]) -> dict[str, str]:
    resolved = dict(headers)
    for name, env_var in header_env.items():
        resolved[name] = clients.secret(env_var, purpose=f"header {name}")
    return resolved


async def send(
    clients: ActivityClients,
    *,
    method: str,
    url: str,
    headers: dict[str, str],
    body: Any,
    timeout_seconds: float,
    shown_url: str,
) -> httpx.Response:
    """One request to an allowed host; transport failures become retryable errors that name the (masked) target."""
    refused = clients.reach().url_problem(url)
    if refused:
        raise ApplicationError(f"{method} {shown_url} refused: {refused}", type="HostNotAllowed", non_retryable=True)
    try:
        async with clients.http_session(timeout_seconds) as client:
            return await client.request(
                method, url, headers=headers, json=body if body is not None else None, timeout=timeout_seconds
            )
    except httpx.HTTPError as exc:
        raise ApplicationError(f"{method} {shown_url} failed: {type(exc).__name__}", type="HttpTransportError") from None


def check_status(status: int, expected: list[int], what: str) -> None:
    if status in expected:
        return
    retryable = status >= 500 or status == 429
    raise ApplicationError(
        f"{what} answered {status}, expected {expected}", type="UnexpectedStatus", non_retryable=not retryable
    )


def response_excerpt(text: str, *, secrets: list[str]) -> str:
    """The start of a response body with the secrets sent and credential-shaped values masked (a server may echo
    the request); redacted with a margin before the cut, so a secret straddling the cut is masked too."""
    return redact_text(text[: EXCERPT_CHARS * 4], secrets=secrets)[:EXCERPT_CHARS]


class HttpActivities:
    def __init__(self, clients: ActivityClients) -> None:
        self._clients = clients

    @activity.defn(name="http.call")
    async def call(self, invocation: StepInvocation[HttpCallArgs]) -> HttpCallResult:
        args = invocation.args
        url = args.url if args.url is not None else self._clients.secret(args.url_env or "", purpose="URL")
        shown_url = mask_url(args.url) if args.url is not None else f"${args.url_env}"
        headers = resolve_headers(self._clients, args.headers, args.header_env)
        secrets = [headers[name] for name in args.header_env] + ([url] if args.url_env is not None else [])
        if args.method not in ("GET", "HEAD"):
            headers.setdefault("Idempotency-Key", idempotency_key(invocation))
        shown_headers = mask_headers(headers)
        request = f"{args.method} {shown_url}"
        if invocation.dry_run:
            return HttpCallResult(
                changed=True, request=request, request_headers=shown_headers, summary=f"would send {request}"
            )
        response = await send(
            self._clients, method=args.method, url=url, headers=headers, body=args.body,
            timeout_seconds=args.timeout_seconds, shown_url=shown_url,
        )
        check_status(response.status_code, args.expected_status, request)
        return HttpCallResult(
            changed=args.method not in ("GET", "HEAD"),
            status=response.status_code,
            ok=True,
            request=request,
            request_headers=shown_headers,
            response_excerpt=response_excerpt(response.text, secrets=secrets),
            summary=f"{request} -> {response.status_code}",
        )
