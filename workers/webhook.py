"""The Alertmanager webhook receiver: a small ASGI app served by uvicorn (`pitstop webhook`, part of `pitstop up`).
The same process serves the authenticated pitstop API (`/api/v1/...`, workers/api.py) through which every
operator action goes, and, with payload encryption on, the Web UI's codec endpoint (workers/codec_server.py).

POST /alerts (also `/`, `/api/v1/alerts`) with Alertmanager's version-4 JSON body. Each alert belongs to the
incident workflow `incident-<fingerprint>-<startsAt>`; its notifications reach it as the signal
`alert_notification` through signal-with-start (id conflict policy USE_EXISTING), so repeated notifications
coalesce into the running incident and a `resolved` notification reaches it.

Durable before 200: the first notification of each (incident, status) is written to the intake journal
(workers/alert_journal.py: SQLite, fsynced, group-committed) before the answer, and forwarded to Temporal in
the background, in order per incident, retried until Temporal takes it (also after a crash or a restart). The
answer therefore never waits for Temporal: a burst of new alerts or a Temporal outage does not slow it down
or lose anything. The journal lives in `<state_dir>/webhook-journal.db` (PITSTOP_WEBHOOK__JOURNAL to move it);
each webhook process needs its own (in Kubernetes: a StatefulSet with a small volume, or emptyDir if losing
a pod's undelivered backlog is acceptable because Alertmanager re-sends firing alerts every repeat_interval).

Namespace check: when Temporal is first reachable, the receiver checks that the namespace exists and has
pitstop's search attributes (workers/temporal_setup.py; registers them with
`temporal.register_search_attributes`). Until it does, it logs an error naming what is missing and
`pitstop setup`, keeps accepting and journaling alerts, forwards nothing, and checks again every
`NAMESPACE_RECHECK_SECONDS`; /healthz shows `temporal_namespace`. Temporal being down never stops it starting.

Deduplication: Alertmanager re-sends the same alert every `repeat_interval` (and several receivers or
replicas may send it too); such repeats, for an (incident, status) this process accepted in the last
`DELIVERED_TTL_SECONDS`, are answered at once and their count is delivered in one coalesced signal every
`REPEAT_FLUSH_SECONDS` (and at shutdown). A repeat carries no new information, so a crash can lose at most a
repeat *count*, never an alert or a status change; a failed flush is retried at the next tick.

Authentication (pitstop/webhook_auth.py): `Authorization: Bearer <token>`, `Authorization: Basic ...` when
`settings.webhook.basic_auth` is set, or an HMAC signature (`X-Pitstop-Timestamp` + `X-Pitstop-Signature`)
over the timestamp and the body, refused outside `signature_window_seconds` and when replayed within it.
Bearer and basic credentials are checked from the headers before the body is read: an unauthenticated
request is answered 401 at once (`Connection: close`) and its body is never read. A signed request's body is
read up to `max_body_bytes` only once its headers are well-formed and its timestamp fresh. The token comes from
`settings.webhook.token` (PITSTOP_WEBHOOK__TOKEN); without one, a random token is created once in
`<state_dir>/webhook.token` (0600). It is never logged.

Rate limit (pitstop/client_rate_limit.py): a token bucket per client (the authenticated identity, or the
remote address while unauthenticated; `settings.webhook.rate_limit`), 429 with Retry-After when empty.

Answers: 200 `{"incidents": [...]}` (each `delivered`: `accepted` = journaled, `repeat coalesced`); 400 body
is not JSON pitstop can represent (`pitstop.alerts.decode_body`: not UTF-8, NaN, numbers out of range,
nested deeper than `MAX_BODY_DEPTH`, unpaired surrogates); 401 unauthenticated, a stale timestamp or a replayed
signature; 404/405 wrong path/method; 413 body larger than `settings.webhook.max_body_bytes`; 415 not JSON
content; 422 JSON that is not a v4 payload (with the reason); 429 over the client's rate limit; 503 the
journal is full or unwritable (Alertmanager retries). Never 500 for a bad request.
GET /healthz answers 200 with counters (accepted, refused, refused_unread: refused from the headers alone —
unauthenticated or over the rate limit — their body never read, forwarded, backlog) and how long the latest
deliveries took from journal to Temporal (forward_ms_p50, forward_ms_max).

Metrics (workers/metrics.py, docs/observability.md): request latency by route and code, the journal's backlog and
oldest age, and the SDK's client metrics, on their own endpoint `webhook.metrics_listen` (default 127.0.0.1:9465).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import secrets
import sqlite3
import sys
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from pitstop.access import AccessPolicy
from pitstop.alerts import AlertmanagerWebhook, AlertNotification, BodyNotJson, decode_body, notifications_from
from pitstop.client_rate_limit import ClientRateLimits
from pitstop.config import Settings
from pitstop.incidents import ALERT_SIGNAL, INCIDENT_WORKFLOW, IncidentStart
from pitstop.webhook_auth import (
    Authenticated, ReplayGuard, SignatureToCheck, Unauthenticated, WebhookCredentials, check_headers,
    signature_matches,
)

from .alert_journal import AlertForwarder, AlertJournal, JournalEntry, JournalFull, JournalInUse
from .asgi_body import BodyRefused, read_bounded_body
from .metrics import WebhookMetrics, meter_of, sample_journal, webhook_metrics_runtime

log = logging.getLogger("pitstop.webhook")

ALERT_PATHS = ("/alerts", "/", "/api/v1/alerts")
REPEAT_FLUSH_SECONDS = 2.0
DELIVERED_TTL_SECONDS = 300.0
MAX_TRACKED_DELIVERIES = 100_000
NAMESPACE_RECHECK_SECONDS = 15.0  # a namespace without pitstop's search attributes is checked again this often
RETRY_UNREACHABLE_MAX_SECONDS = 10.0  # Temporal unreachable at start: retried with backoff up to this
SIGNATURE_HEADER = b"x-pitstop-signature"
TIMESTAMP_HEADER = b"x-pitstop-timestamp"
CLOSE = (b"connection", b"close")  # refused before the body was read: uvicorn closes instead of reading it

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class RequestRefused(Exception):
    def __init__(self, status: int, reason: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        """`headers` with `CLOSE`: refused before the body was read."""
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or []


def webhook_token(settings: Settings) -> str:
    """The configured token, or one created once in the state dir (0600) so the default is never open."""
    if settings.webhook.token is not None and settings.webhook.token.get_secret_value():
        return settings.webhook.token.get_secret_value()
    path = token_file(settings)
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def token_file(settings: Settings) -> Path:
    return settings.state_dir / "webhook.token"


def journal_path(settings: Settings) -> Path:
    return settings.webhook.journal or settings.state_dir / "webhook-journal.db"


def webhook_credentials(settings: Settings) -> WebhookCredentials:
    basic = settings.webhook.basic_auth
    return WebhookCredentials(token=webhook_token(settings).encode(),
                              basic_username=basic.username.encode() if basic else None,
                              basic_password=basic.password.get_secret_value().encode() if basic else None)


class AlertWebhook:
    """The ASGI application. `client` is one long-lived Temporal client (pydantic data converter)."""

    def __init__(self, *, client: Client, credentials: WebhookCredentials, task_queue: str, max_body_bytes: int,
                 journal: AlertJournal, rate_limits: ClientRateLimits, signature_window_seconds: float) -> None:
        self.client = client
        self.journal = journal
        self.forwarder = AlertForwarder(journal, self._forward)
        self.namespace_ready = asyncio.Event()  # set once the namespace has pitstop's search attributes
        self.namespace_problem = "not checked yet"
        self.credentials = credentials
        self.rate_limits = rate_limits
        self.signature_window_seconds = signature_window_seconds
        self.replays = ReplayGuard(window_seconds=signature_window_seconds)
        self.task_queue = task_queue
        self.max_body_bytes = max_body_bytes
        self.accepted = 0
        self.refused = 0
        self.refused_unread = 0  # refused before the body was read (unauthenticated, over the rate limit)
        self._in_flight: dict[tuple[str, str], asyncio.Future[dict[str, str]]] = {}
        self._delivered: OrderedDict[tuple[str, str], float] = OrderedDict()  # (incident, status) -> monotonic
        self._repeats: dict[tuple[str, str], tuple[AlertNotification, int]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            status, body = await self._handle(scope, receive)
            headers: list[tuple[bytes, bytes]] = []
        except RequestRefused as refused:
            self.refused += 1
            if CLOSE in refused.headers:
                self.refused_unread += 1
            status, body, headers = refused.status, {"error": refused.reason}, refused.headers
        except Exception as exc:  # noqa: BLE001 - one bad request must never take the receiver down
            log.exception("unexpected error handling a webhook request")
            status, body, headers = 500, {"error": f"internal error: {type(exc).__name__}"}, []
        await _respond(send, status, body, headers)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})  # `serve` opened the journal already
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def start(self) -> None:
        """Open the journal and replay what it still holds (undelivered before a crash or an outage)."""
        entries = await self.journal.open()
        if entries:
            log.info("replaying %d undelivered alert notification(s) from %s", len(entries), self.journal.path)
        for entry in entries:
            self.forwarder.submit(entry)

    async def shutdown(self, drain_seconds: float = 10.0) -> None:
        """Flush repeat counts, give the forwarder `drain_seconds` to deliver, keep the rest journaled."""
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            self._flusher.cancel()
        await self.flush_repeats()
        if not await self.forwarder.drain(drain_seconds if self.namespace_ready.is_set() else 0.0):
            log.warning("%d alert notification(s) not yet delivered stay in %s for the next start",
                        self.forwarder.backlog, self.journal.path)
        await self.forwarder.stop()
        await self.journal.close()

    async def check_namespace(self, settings: Settings) -> None:
        """Check (or, if the settings allow, set up) the namespace when Temporal is first reachable; until it
        is ready alerts stay journaled (never lost) and nothing is forwarded. Logs each change of state."""
        from .errors import EXIT_UNAVAILABLE, CliError
        from .temporal_setup import ensure_ready

        delay = 0.5
        while True:
            try:
                await ensure_ready(self.client, settings)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep accepting and journaling alerts; check again later
                unreachable = not isinstance(exc, CliError) or exc.exit_code == EXIT_UNAVAILABLE
                problem = "unreachable" if unreachable else "not set up"
                if problem != self.namespace_problem:
                    self.namespace_problem = problem
                    text = exc.message if isinstance(exc, CliError) else f"{type(exc).__name__}: {exc}"
                    (log.warning if unreachable else log.error)(
                        "%s Alerts are accepted and kept in %s; they are forwarded once this is fixed "
                        "(checked again every %.0fs).", text, self.journal.path,
                        RETRY_UNREACHABLE_MAX_SECONDS if unreachable else NAMESPACE_RECHECK_SECONDS)
                await asyncio.sleep(min(delay, RETRY_UNREACHABLE_MAX_SECONDS) if unreachable
                                    else NAMESPACE_RECHECK_SECONDS)
                delay *= 2
                continue
            if self.namespace_problem != "not checked yet":
                log.info("Temporal namespace %r is ready; forwarding %d journaled alert notification(s)",
                         settings.temporal.namespace, self.forwarder.backlog)
            self.namespace_ready.set()
            return

    async def _forward(self, note: AlertNotification) -> dict[str, str]:
        await self.namespace_ready.wait()
        return await self._signal_with_start(note)

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
        path, method = scope.get("path", ""), scope.get("method", "")
        if path in ("/healthz", "/-/healthy", "/-/ready"):
            forwarded = sorted(self.forwarder.forward_seconds)
            return 200, {"status": "ok", "accepted": self.accepted, "refused": self.refused,
                         "refused_unread": self.refused_unread,
                         "forwarded": self.forwarder.delivered, "backlog": self.forwarder.backlog,
                         "forward_retries": self.forwarder.retries,
                         "temporal_namespace": "ready" if self.namespace_ready.is_set() else self.namespace_problem,
                         "forward_ms_p50": round(forwarded[len(forwarded) // 2] * 1000, 1) if forwarded else None,
                         "forward_ms_max": round(forwarded[-1] * 1000, 1) if forwarded else None}
        if path not in ALERT_PATHS:
            raise RequestRefused(404, f"no such endpoint {path!r}; Alertmanager posts to /alerts")
        if method != "POST":
            raise RequestRefused(405, "use POST", [(b"allow", b"POST")])
        headers = {k.lower(): v for k, v in scope.get("headers") or []}
        verdict = self._check_headers(headers, scope)
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                raise RequestRefused(400, "invalid Content-Length") from None
            if length > self.max_body_bytes:
                raise RequestRefused(413, f"body of {length} bytes exceeds the limit of {self.max_body_bytes}")
        body = await self._read_body(receive)
        if isinstance(verdict, SignatureToCheck):
            self._check_signature(verdict, body)
            try:
                return await self._accept(headers, body)
            except BaseException as exc:
                if not isinstance(exc, RequestRefused) or exc.status >= 500:
                    self.replays.forget(verdict)  # failed on our side: the sender may retry the same request
                raise
        return await self._accept(headers, body)

    def _check_headers(self, headers: dict[bytes, bytes], scope: Scope) -> Authenticated | SignatureToCheck:
        """Credentials and the client's rate limit, from the headers alone: refused here, the body is never read."""
        verdict = check_headers(authorization=headers.get(b"authorization"), timestamp=headers.get(TIMESTAMP_HEADER),
                                signature=headers.get(SIGNATURE_HEADER), credentials=self.credentials,
                                now=time.time(), window_seconds=self.signature_window_seconds)
        peer = scope.get("client")
        client = verdict.identity if isinstance(verdict, Authenticated) else (peer[0] if peer else "unknown")
        wait = self.rate_limits.retry_after(client)
        if wait > 0:
            raise RequestRefused(429, f"rate limit of {self.rate_limits.per_second:g} requests/s "
                                      f"(burst {self.rate_limits.burst}) exceeded; retry after {wait:.1f} s",
                                 [(b"retry-after", str(max(1, math.ceil(wait))).encode()), CLOSE])
        if isinstance(verdict, Unauthenticated):
            raise RequestRefused(401, f"authentication required: {verdict.reason}",
                                 [(b"www-authenticate", b'Bearer realm="pitstop"'), CLOSE])
        return verdict

    def _check_signature(self, claim: SignatureToCheck, body: bytes) -> None:
        if not signature_matches(self.credentials.token, claim, body):
            raise RequestRefused(401, "X-Pitstop-Signature does not match the timestamp and body",
                                 [(b"www-authenticate", b'Bearer realm="pitstop"')])
        now = time.time()
        remembered = self.replays.remember(claim, now=now)
        if remembered == "replay":
            raise RequestRefused(401, "this signature was already used: sign every request anew",
                                 [(b"www-authenticate", b'Bearer realm="pitstop"')])
        if remembered == "full":
            wait = max(1, math.ceil(self.replays.seconds_until_room(now=now)))
            raise RequestRefused(503, "too many signed requests within the replay window",
                                 [(b"retry-after", str(wait).encode())])

    async def _accept(self, headers: dict[bytes, bytes], body: bytes) -> tuple[int, dict[str, Any]]:
        content_type = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
        if content_type not in (b"application/json", b"text/json", b""):
            raise RequestRefused(415, f"content type {content_type.decode(errors='replace')!r} is not JSON")
        try:
            data = decode_body(body)
        except BodyNotJson as exc:
            raise RequestRefused(400, str(exc)) from None
        try:
            payload = AlertmanagerWebhook.model_validate(data)
        except ValidationError as exc:
            raise RequestRefused(422, "not an Alertmanager v4 webhook payload: " + _first_errors(exc)) from None
        notes = notifications_from(payload, received_at=datetime.now(timezone.utc))
        try:
            results = await asyncio.gather(*(self._deliver(note) for note in notes))
        except JournalFull as exc:
            raise RequestRefused(503, str(exc), [(b"retry-after", b"30")]) from None
        except sqlite3.Error as exc:
            raise RequestRefused(503, f"the alert journal is unwritable: {exc}", [(b"retry-after", b"5")]) from None
        self.accepted += 1
        return 200, {"incidents": results}

    async def _read_body(self, receive: Receive) -> bytes:
        try:
            return await read_bounded_body(receive, self.max_body_bytes)
        except BodyRefused as exc:
            raise RequestRefused(exc.status, exc.reason) from None

    async def _deliver(self, note: AlertNotification) -> dict[str, str]:
        """First notification of an (incident, status): journaled now, forwarded to Temporal in the background.
        A repeat: counted, flushed shortly.

        Repeats that arrive while the first is being journaled wait for it (the alert is durable once that
        completes; if it fails they fail too, and Alertmanager retries) and add their count to the next flush.
        """
        key = (note.incident_id, note.alert.status)
        delivered_at = self._delivered.get(key)
        if delivered_at is not None and time.monotonic() - delivered_at < DELIVERED_TTL_SECONDS:
            return self._count_repeat(key, note)
        in_flight = self._in_flight.get(key)
        if in_flight is not None:
            await asyncio.shield(in_flight)
            return self._count_repeat(key, note)
        first: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
        first.add_done_callback(lambda done: done.cancelled() or done.exception())  # never "unretrieved"
        self._in_flight[key] = first
        try:
            entry_id = await self.journal.append(note)
            self.forwarder.submit(JournalEntry(entry_id, note))
            result = {"incident": note.incident_id, "status": note.alert.status, "delivered": "accepted"}
        except BaseException as exc:
            first.set_exception(exc)
            raise
        finally:
            self._in_flight.pop(key, None)
        first.set_result(result)
        self._delivered[key] = time.monotonic()
        self._delivered.move_to_end(key)
        while len(self._delivered) > MAX_TRACKED_DELIVERIES:
            self._delivered.popitem(last=False)
        return result

    def _count_repeat(self, key: tuple[str, str], note: AlertNotification) -> dict[str, str]:
        _, count = self._repeats.get(key, (note, 0))
        self._repeats[key] = (note, count + note.count)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_periodically())
        return {"incident": note.incident_id, "status": note.alert.status, "delivered": "repeat coalesced"}

    async def _flush_periodically(self) -> None:
        while self._repeats:
            await asyncio.sleep(REPEAT_FLUSH_SECONDS)
            await self.flush_repeats()

    async def flush_repeats(self) -> None:
        """Deliver the counted repeats, one signal per (incident, status); failures stay for the next tick."""
        if not self.namespace_ready.is_set():
            return  # counted repeats wait, like journaled alerts, until the namespace is ready
        pending, self._repeats = self._repeats, {}
        if not pending:
            return

        async def one(key: tuple[str, str], note: AlertNotification, count: int) -> None:
            try:
                await self._signal_with_start(note.model_copy(update={"count": count}))
            except Exception as exc:  # noqa: BLE001 - keep the count, retry at the next tick
                log.warning("could not deliver %d repeated notification(s) of %s: %s", count, key[0], exc)
                _, later = self._repeats.get(key, (note, 0))
                self._repeats[key] = (note, later + count)

        await asyncio.gather(*(one(key, note, count) for key, (note, count) in pending.items()))

    async def _signal_with_start(self, note: AlertNotification) -> dict[str, str]:
        incident = note.incident_id
        try:
            await self.client.start_workflow(
                INCIDENT_WORKFLOW,
                IncidentStart(incident_id=incident, task_queue=self.task_queue),
                id=incident,
                task_queue=self.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                start_signal=ALERT_SIGNAL,
                start_signal_args=[note],
                static_summary=f"{note.alert.name} {note.alert.status}",
            )
        except WorkflowAlreadyStartedError:
            return {"incident": incident, "status": note.alert.status, "delivered": "incident already closed"}
        return {"incident": incident, "status": note.alert.status, "delivered": "signalled"}


def _first_errors(exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for error in exc.errors()[:limit]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


async def _respond(send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
    raw = json.dumps(body).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode()), *headers],
    })
    await send({"type": "http.response.body", "body": raw})


def with_codec_endpoint(app: AlertWebhook, settings: Settings) -> Any:
    """With payload encryption on, the Web UI's codec endpoint `/codec/*` is served beside the alerts
    (workers/codec_server.py); otherwise the webhook alone."""
    if settings.security.payload_keys_file is None:
        return app
    from .codec_server import CodecEndpoint, default_origins
    from .payload_codec import EncryptionCodec, KeyRing

    codec = EncryptionCodec(KeyRing.load(settings.security.payload_keys_file))

    origins = settings.security.codec_allowed_origins or default_origins(settings.temporal.ui_port)
    return CodecEndpoint(app, codec=codec, allowed_origins=origins)


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return (host or "127.0.0.1").strip("[]"), int(port)


def with_operator_api(inner: Any, settings: Settings, client: Client, policy: AccessPolicy | None) -> Any:
    """The authenticated pitstop API (`/api/v1/runs|releases|incidents|schedules/...`, workers/api.py) in front
    of the alerts and the codec endpoint."""
    from .api import OperatorApi
    from .api_actions import ApiActions
    from .identity import Authenticator, start_claim_key

    return OperatorApi(inner, authenticator=Authenticator.from_settings(settings), policy=policy,
                       actions=ApiActions(client=client, settings=settings, start_claim_key=start_claim_key(settings)))


def access_policy(settings: Settings) -> AccessPolicy | None:
    """The access policy `security.policy_file` (pitstop/policy/; `pitstop up` uses runbooks/policy.yaml);
    None when none is configured: the API then refuses every operator action (fail closed)."""
    from pitstop.policy import PolicyError, load_policy

    from .errors import EXIT_USAGE, CliError

    path = settings.security.policy_file
    if path is None:
        log.warning("no access policy (security.policy_file): the pitstop API refuses every operator action")
        return None
    try:
        return load_policy(path)
    except PolicyError as exc:
        raise CliError(f"the access policy is invalid: {exc}", exit_code=EXIT_USAGE) from None


def alert_webhook(settings: Settings, client: Client) -> AlertWebhook:
    """The receiver, configured from `settings.webhook` (credentials, journal, rate limits, signature window)."""
    limit = settings.webhook.rate_limit
    return AlertWebhook(client=client, credentials=webhook_credentials(settings), task_queue=settings.temporal.task_queue,
                        max_body_bytes=settings.webhook.max_body_bytes, journal=AlertJournal(journal_path(settings)),
                        rate_limits=ClientRateLimits(per_second=limit.per_second, burst=limit.burst),
                        signature_window_seconds=settings.webhook.signature_window_seconds)


async def serve(settings: Settings, *, client: Client | None = None, ready: asyncio.Event | None = None,
                stop: asyncio.Event | None = None, port: int | None = None,
                policy: AccessPolicy | None = None) -> None:
    """Run the receiver until `stop` is set, or, without `stop`, until SIGINT/SIGTERM (with `stop`, the host
    process keeps its own signal handlers). `port` overrides `settings.webhook.listen`'s; `policy` the
    configured access policy's (`access_policy`)."""
    import uvicorn

    if client is None:
        from .temporal_connection import connect

        client = await connect(settings, lazy=True, runtime=webhook_metrics_runtime(settings))  # alerts are journaled even while Temporal is down
    app = alert_webhook(settings, client)
    host, listen_port = parse_listen(settings.webhook.listen)
    meter = meter_of(client)  # pitstop's metrics (workers/metrics.py), on the client's runtime
    asgi = with_operator_api(with_codec_endpoint(app, settings), settings, client,
                             policy if policy is not None else access_policy(settings))
    config = uvicorn.Config(WebhookMetrics(asgi, meter), host=host, port=port if port is not None else listen_port,
                            log_level="warning", access_log=False, lifespan="on", limit_concurrency=2000, backlog=4096,
                            timeout_keep_alive=30)

    class HostSignalsServer(uvicorn.Server):
        """Embedded (`stop` given): SIGINT/SIGTERM stay with the host process; `stop` ends the server."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    server = uvicorn.Server(config) if stop is None else HostSignalsServer(config)

    async def watch() -> None:
        while not server.started:
            await asyncio.sleep(0.02)
        if ready is not None:
            ready.set()
        print(f"pitstop webhook ready on http://{host}:{config.port}/alerts (task queue {settings.temporal.task_queue})",
              flush=True)
        if stop is not None:
            await stop.wait()
            server.should_exit = True

    try:
        await app.start()
    except JournalInUse as exc:
        from .errors import CliError

        raise CliError(str(exc), exit_code=2) from None
    watcher = asyncio.create_task(watch())
    namespace_check = asyncio.create_task(app.check_namespace(settings))
    journal_gauges = asyncio.create_task(sample_journal(app.forwarder, meter))
    try:
        await server.serve()
    finally:
        watcher.cancel()
        namespace_check.cancel()
        journal_gauges.cancel()
        await app.shutdown()


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (a dependency on Linux/macOS): it halves the receiver's CPU per request."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main() -> None:
    """`python -m pitstop.workers.webhook`: serve with the Settings from the environment/config file."""
    from .errors import CliError
    from .tracing import shutdown_tracing

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = Settings()
        with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
            runner.run(serve(settings))
        code = 0
    except CliError as exc:
        print(f"pitstop webhook: error: {exc.message}", file=sys.stderr)
        code = exc.exit_code

    except KeyboardInterrupt:
        code = 130
    shutdown_tracing()  # export the spans still batched
    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(0)
    os._exit(code)


if __name__ == "__main__":
    main()
