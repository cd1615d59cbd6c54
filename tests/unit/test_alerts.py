"""Alertmanager v4 payload validation and incident ids."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from pitstop.alerts import AlertmanagerWebhook, incident_id, notifications_from, severity_rank


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
