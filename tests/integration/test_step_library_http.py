"""`http.call` and `notify.*` against a real HTTP server on a free loopback port: secrets resolved from env
var names and never reported, idempotency keys, expected status handling, dry runs send nothing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from pitstop.activities.clients import ActivityClients
from pitstop.activities.http import HttpActivities
from pitstop.activities.notify import NotifyActivities
from pitstop.config import Settings
from pitstop.redaction import MASK
from pitstop.runbook.step_types import StepInvocation
from pitstop.steps.http import HttpCallArgs
from pitstop.steps.notify import SlackArgs, WebhookArgs

SECRET = "s3cr3t-T0ken-0123456789abcdef"


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    requests: list[Received] = field(default_factory=list)
    status: int = 200
    reply: bytes = b'{"ok": true}'

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            rec = state["r"]
            rec.requests.append(Received(self.command, self.path, dict(self.headers), json.loads(raw) if raw else None))
            self.send_response(rec.status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(rec.reply)

        do_GET = do_POST = do_PUT = _handle  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["r"] = Receiver(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state["r"]
    server.shutdown()
    server.server_close()


ALLOWLIST = ["API_TOKEN", "MISSING_TOKEN", "SLACK_*"]


def clients(allowed_hosts: tuple[str, ...] = (), **env: str) -> ActivityClients:
    settings = Settings(security={"env_allowlist": ALLOWLIST, "allowed_hosts": list(allowed_hosts)})
    return ActivityClients(settings=settings, environ=env)


def call(args: Any, *, dry_run: bool = False) -> StepInvocation[Any]:
    return StepInvocation[type(args)](args=args, dry_run=dry_run, run_id="run-9", step_id="notify")  # type: ignore[misc]


async def test_http_call_resolves_secrets_by_name_and_never_reports_them(receiver: Receiver) -> None:
    http = HttpActivities(clients(API_TOKEN=f"Bearer {SECRET}"))
    args = HttpCallArgs(method="POST", url=f"{receiver.url}/deploy?sig=abc", header_env={"Authorization": "API_TOKEN"}, body={"v": 1})
    result = await ActivityEnvironment().run(http.call, call(args))
    sent = receiver.requests[-1]
    assert sent.headers["Authorization"] == f"Bearer {SECRET}" and sent.body == {"v": 1}
    assert sent.headers["Idempotency-Key"] == "run-9/notify"
    assert result.status == 200 and result.ok and result.request_headers["Authorization"] == MASK
    assert SECRET not in result.model_dump_json() and "abc" not in result.request


async def test_http_call_status_handling_and_dry_run(receiver: Receiver) -> None:
    http, env = HttpActivities(clients()), ActivityEnvironment()
    preview = await env.run(http.call, call(HttpCallArgs(method="DELETE", url=f"{receiver.url}/x"), dry_run=True))
    assert preview.changed and preview.summary.startswith("would send") and not receiver.requests
    receiver.status = 404
    with pytest.raises(ApplicationError, match="answered 404") as info:
        await env.run(http.call, call(HttpCallArgs(url=f"{receiver.url}/missing")))
    assert info.value.non_retryable
    receiver.status = 503
    with pytest.raises(ApplicationError, match="answered 503") as info:
        await env.run(http.call, call(HttpCallArgs(url=f"{receiver.url}/down")))
    assert not info.value.non_retryable  # transient: Temporal retries
    with pytest.raises(ApplicationError, match="MISSING_TOKEN") as info:
        await env.run(http.call, call(HttpCallArgs(url=f"{receiver.url}/x", header_env={"Authorization": "MISSING_TOKEN"})))
    assert info.value.non_retryable


async def test_slack_and_webhook_notifications(receiver: Receiver) -> None:
    notify, env = NotifyActivities(clients(SLACK_WEBHOOK_URL=f"{receiver.url}/services/T0/B0/{SECRET}", SLACK_TOKEN=SECRET)), ActivityEnvironment()
    slack = await env.run(notify.slack, call(SlackArgs(url_env="SLACK_WEBHOOK_URL", token_env="SLACK_TOKEN", text="rollback of checkout done")))
    sent = receiver.requests[-1]
    assert sent.body == {"text": "rollback of checkout done"} and sent.headers["Authorization"] == f"Bearer {SECRET}"
    assert slack.target == "$SLACK_WEBHOOK_URL" and SECRET not in slack.model_dump_json()
    hook = await env.run(notify.webhook, call(WebhookArgs(url=f"{receiver.url}/hook", payload={"event": "canary.promoted"})))
    assert receiver.requests[-1].body == {"event": "canary.promoted"} and hook.status == 200


async def test_call_time_checks_of_env_vars_and_hosts(receiver: Receiver) -> None:
    """What validation cannot see (a URL from an env var or an expression) is checked when the worker calls."""
    env = ActivityEnvironment()
    http = HttpActivities(clients(PITSTOP_TEMPORAL__API_KEY="temporal-key", OTHER_SECRET="x" * 12))
    for name, why in (("PITSTOP_TEMPORAL__API_KEY", "configures pitstop itself"), ("OTHER_SECRET", "env_allowlist")):
        with pytest.raises(ApplicationError, match=why) as info:
            await env.run(http.call, call(HttpCallArgs(url=f"{receiver.url}/x", header_env={"X-Leak": name})))
        assert info.value.non_retryable and info.value.type == "EnvNotAllowed"
    notify = NotifyActivities(clients(("hooks.example.com",), SLACK_WEBHOOK_URL=f"{receiver.url}/hook"))
    with pytest.raises(ApplicationError, match="host 127.0.0.1 is not in the worker's `security.allowed_hosts`") as info:
        await env.run(notify.slack, call(SlackArgs(url_env="SLACK_WEBHOOK_URL", text="hi")))
    assert info.value.non_retryable and info.value.type == "HostNotAllowed"
    assert receiver.requests == []  # nothing left the worker
    allowed = HttpActivities(clients(("127.0.0.1",)))
    assert (await env.run(allowed.call, call(HttpCallArgs(url=f"{receiver.url}/x")))).status == 200


async def test_response_excerpt_masks_the_secrets_the_server_echoes(receiver: Receiver) -> None:
    receiver.reply = json.dumps({"echo": {"Authorization": f"Bearer {SECRET}"}, "session": "abc123", "n": 1}).encode()
    http = HttpActivities(clients(API_TOKEN=f"Bearer {SECRET}"))
    result = await ActivityEnvironment().run(
        http.call, call(HttpCallArgs(url=f"{receiver.url}/x", header_env={"Authorization": "API_TOKEN"})))
    assert SECRET not in result.response_excerpt and "abc123" not in result.response_excerpt
    assert '"n": 1' in result.response_excerpt and MASK in result.response_excerpt
