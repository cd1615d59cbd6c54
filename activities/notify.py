"""Notification activities: `notify.webhook` (JSON POST) and `notify.slack` (`{"text": ...}`), async httpx.

URLs and tokens may come from worker env vars by name (`url_env`, `token_env`) and are never reported: the
result names the env var or a masked URL. Delivery failures (connection, 5xx, 429) are retried by Temporal.
"""

from __future__ import annotations

from typing import Any

from temporalio import activity

from pitstop.redaction import mask_url
from pitstop.runbook.step_types import StepInvocation
from pitstop.steps.notify import NotifyResult, SlackArgs, WebhookArgs

from .clients import ActivityClients
from .http import check_status, resolve_headers, send
from .idempotency import idempotency_key


class NotifyActivities:
    def __init__(self, clients: ActivityClients) -> None:
        self._clients = clients

    async def _post(
        self, invocation: StepInvocation[Any], payload: dict[str, Any], headers: dict[str, str]
    ) -> NotifyResult:
        args = invocation.args
        url = args.url if args.url is not None else self._clients.secret(args.url_env, purpose="notification URL")
        target = mask_url(args.url) if args.url is not None else f"${args.url_env}"
        headers = {**headers, "Idempotency-Key": idempotency_key(invocation)}
        if args.token_env:
            headers["Authorization"] = f"Bearer {self._clients.secret(args.token_env, purpose='notification token')}"
        if invocation.dry_run:
            return NotifyResult(changed=True, target=target, summary=f"would notify {target}")
        response = await send(
            self._clients, method="POST", url=url, headers=headers, body=payload,
            timeout_seconds=args.timeout_seconds, shown_url=target,
        )
        check_status(response.status_code, list(range(200, 300)), f"notification to {target}")
        return NotifyResult(changed=True, status=response.status_code, target=target, summary=f"notified {target} ({response.status_code})")

    @activity.defn(name="notify.webhook")
    async def webhook(self, invocation: StepInvocation[WebhookArgs]) -> NotifyResult:
        args = invocation.args
        return await self._post(invocation, args.payload, resolve_headers(self._clients, args.headers, args.header_env))

    @activity.defn(name="notify.slack")
    async def slack(self, invocation: StepInvocation[SlackArgs]) -> NotifyResult:
        args = invocation.args
        payload: dict[str, Any] = {"text": args.text}
        if args.channel:
            payload["channel"] = args.channel
        return await self._post(invocation, payload, {})
