"""Alertmanager v4 payload validation and incident ids."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from pitstop.alerts import (
    MAX_BODY_DEPTH, AlertmanagerWebhook, BodyNotJson, decode_body, incident_id, notifications_from, severity_rank,
)


def payload(**overrides: object) -> dict:
    alert = {
        "status": "firing",
        "labels": {"alertname": "CrashLooping", "namespace": "payments", "pod": "checkout-7d9f8b6c5d-x2x7q",
                   "region": "eu-central", "severity": "warning"},
        "annotations": {"summary": "crash"},
        "startsAt": "2026-11-25T10:00:00.123Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": "a1b2c3d4e5f60718",
    }
    body = {
        "version": "4", "groupKey": "{}:{alertname=\"CrashLooping\"}", "truncatedAlerts": 0, "status": "firing",
        "receiver": "pitstop", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager", "alerts": [alert],
    }
    body.update(overrides)
    return body


def test_parses_alertmanager_v4_and_derives_incident_id() -> None:
    hook = AlertmanagerWebhook.model_validate(payload())
    alert = hook.alerts[0]
    assert alert.name == "CrashLooping" and alert.severity == "warning"
    assert alert.resolved_at is None
    assert incident_id(alert) == f"incident-a1b2c3d4e5f60718-{int(datetime(2026, 11, 25, 10, tzinfo=timezone.utc).timestamp())}"


def test_resolved_notification_reaches_the_same_incident() -> None:
    firing = AlertmanagerWebhook.model_validate(payload()).alerts[0]
    body = payload(status="resolved")
    body["alerts"][0].update(status="resolved", endsAt="2026-11-25T10:05:00Z")
    resolved = AlertmanagerWebhook.model_validate(body).alerts[0]
    assert incident_id(resolved) == incident_id(firing)
    assert resolved.resolved_at == datetime(2026, 11, 25, 10, 5, tzinfo=timezone.utc)


def test_a_new_firing_episode_is_a_new_incident() -> None:
    first = AlertmanagerWebhook.model_validate(payload()).alerts[0]
    body = payload()
    body["alerts"][0]["startsAt"] = "2026-11-25T11:00:00Z"
    assert incident_id(AlertmanagerWebhook.model_validate(body).alerts[0]) != incident_id(first)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"version": "3"}, "version"),
        ({"alerts": []}, "alerts"),
        ({"status": "weird"}, "status"),
    ],
)
def test_rejects_malformed_payloads_with_a_reason(change: dict, needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        AlertmanagerWebhook.model_validate(payload(**change))
    assert needle in str(info.value)


def test_rejects_alert_without_alertname_or_with_bad_fingerprint() -> None:
    body = payload()
    del body["alerts"][0]["labels"]["alertname"]
    with pytest.raises(ValidationError, match="alertname"):
        AlertmanagerWebhook.model_validate(body)
    body = payload()
    body["alerts"][0]["fingerprint"] = "../../etc"
    with pytest.raises(ValidationError, match="fingerprint"):
        AlertmanagerWebhook.model_validate(body)


def test_duplicate_alerts_in_one_payload_collapse() -> None:
    body = payload()
    body["alerts"].append(dict(body["alerts"][0]))
    notes = notifications_from(AlertmanagerWebhook.model_validate(body), received_at=datetime.now(timezone.utc))
    assert len(notes) == 1


def test_severity_ranking() -> None:
    assert severity_rank("critical") > severity_rank("page") > severity_rank("warning") > severity_rank("info")
    assert severity_rank("unknown") == severity_rank("warning")


UNREPRESENTABLE = {
    "deeply nested arrays": b"[" * 100_000 + b"]" * 100_000,
    "deeply nested objects": b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    "one level too deep": b"[" * (MAX_BODY_DEPTH + 1) + b"]" * (MAX_BODY_DEPTH + 1),
    "invalid UTF-8": b'{"version": "4\xff"}',
    "UTF-8-encoded surrogate": b'{"a": "\xed\xa0\x80"}',
    "escaped lone surrogate": b'{"a": "\\ud800"}',
    "lone surrogate in a key": b'{"\\udc00": 1}',
    "NaN": b'{"truncatedAlerts": NaN}',
    "Infinity": b"[-Infinity]",
    "float overflow": b"[1e999]",
    "huge integer": b"[" + b"9" * 5_000 + b"]",
    "integer beyond 64 bits": b"[" + b"9" * 21 + b"]",
    "not JSON": b"{not json",
    "empty": b"",
}


@pytest.mark.parametrize("body", UNREPRESENTABLE.values(), ids=UNREPRESENTABLE.keys())
def test_bodies_json_cannot_represent_are_refused_quickly_with_a_reason(body: bytes) -> None:
    started = time.monotonic()
    with pytest.raises(BodyNotJson) as refused:
        decode_body(body)
    assert time.monotonic() - started < 0.5
    assert str(refused.value) and "Traceback" not in str(refused.value)


def test_ordinary_bodies_decode_as_json_does() -> None:
    body = json.dumps(payload(commonLabels={"emoji": "\U0001f600 \u00fc"})).encode()
    assert decode_body(body) == json.loads(body)
    deepest = b"[" * MAX_BODY_DEPTH + b"]" * MAX_BODY_DEPTH
    assert decode_body(deepest) == json.loads(deepest)
    assert decode_body(b'["\\ud83d\\ude00", 1.5, -3, 99999999999999999999]') == ["\U0001f600", 1.5, -3, 10**20 - 1]
