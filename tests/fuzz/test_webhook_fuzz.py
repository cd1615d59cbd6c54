"""Fuzzing the alert webhook: hostile bodies and requests never get a 5xx, a traceback or a hang.

Pure tier: `decode_body` + `AlertmanagerWebhook` + `notifications_from` over arbitrary bytes, arbitrary JSON
and mutations of a valid v4 payload: a parsed value or the module's own refusal (BodyNotJson -> 400,
ValidationError -> 422), never another exception. HTTP tier: the real receiver process (`python -m
pitstop.workers.webhook` on loopback, tests/fuzz/harness.py) gets hostile bodies, credentials and framing: never
a 5xx, never a logged traceback, and it keeps serving. Cases per test: tests/fuzz/profiles.py.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzz.harness import WebhookProcess, webhook_process
from tests.fuzz.webhook_inputs import (
    HttpRequest, alertmanager_payloads, authorized_post, bodies, decoded_outcome, encoded, hostile_auth_requests,
    hostile_framing_requests, http_outcome, json_values, mutated_payloads,
)

TOKEN = "fuzz-" + secrets.token_hex(8)
GOOD_BODY = json.dumps({"version": "4", "status": "firing", "alerts": [
    {"status": "firing", "labels": {"alertname": "Fuzz"}, "startsAt": "2026-12-01T10:00:00Z",
     "fingerprint": "f0"}]}).encode()


@pytest.fixture(scope="module")
def server() -> Iterator[WebhookProcess]:
    with webhook_process(token=TOKEN) as process:
        yield process
        assert process.alive(), process.log()[-3000:]
        assert process.healthy(), "the receiver stopped answering /healthz"
        assert process.tracebacks() == 0, process.log()[-5000:]


# ------------------------------------------------------------------ pure tier


@given(st.binary(max_size=4_000))
@example(b"\xed\xa0\x80")  # a UTF-8-encoded surrogate
@example(b"[" * 100_000)
def test_any_bytes_decode_or_are_refused(body: bytes) -> None:
    outcome = decoded_outcome(body)
    assert outcome.good, outcome.detail


@given(json_values(nan=True).flatmap(encoded))
@example(b'{"version": "4", "truncatedAlerts": ' + b"9" * 30 + b"}")
def test_any_json_parses_or_is_refused(body: bytes) -> None:
    outcome = decoded_outcome(body)
    assert outcome.good, outcome.detail


@given(mutated_payloads().flatmap(encoded))
def test_mutated_alertmanager_payloads_parse_or_are_refused(body: bytes) -> None:
    outcome = decoded_outcome(body)
    assert outcome.good, outcome.detail


@given(alertmanager_payloads().flatmap(encoded))
def test_valid_alertmanager_payloads_are_accepted(body: bytes) -> None:
    outcome = decoded_outcome(body)
    assert outcome.kind == "ok", outcome.detail


# ------------------------------------------------------------------ HTTP tier (the real receiver)


@given(bodies)
@example(GOOD_BODY)
def test_hostile_bodies_never_get_a_5xx(server: WebhookProcess, body: bytes) -> None:
    outcome = http_outcome(server, authorized_post(TOKEN, body))
    assert outcome.good, outcome.detail


@given(hostile_auth_requests(TOKEN))
@example(HttpRequest(b"POST", b"/alerts", [(b"Authorization", b"Bearer " + b"\xff" * 100_000),
                                           (b"Content-Length", str(len(GOOD_BODY)).encode())], GOOD_BODY))
def test_hostile_credentials_never_get_a_5xx(server: WebhookProcess, request: HttpRequest) -> None:
    outcome = http_outcome(server, request)
    assert outcome.good, (outcome.detail, request)


@given(hostile_framing_requests(TOKEN))
@example(HttpRequest(b"POST", b"/alerts", [(b"Authorization", b"Bearer " + TOKEN.encode()),
                                           (b"Content-Length", b"99999")], GOOD_BODY, half_close=True))
def test_hostile_framing_never_gets_a_5xx(server: WebhookProcess, request: HttpRequest) -> None:
    outcome = http_outcome(server, request)
    assert outcome.good, (outcome.detail, request)


def test_the_receiver_still_accepts_a_good_alert_after_the_fuzz(server: WebhookProcess) -> None:
    outcome = http_outcome(server, authorized_post(TOKEN, GOOD_BODY))
    assert outcome.kind == "ok", outcome.detail
