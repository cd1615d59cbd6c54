"""Alertmanager's webhook payload (version 4) as pydantic models, and how an alert names its incident.

Pure: no I/O. The webhook receiver (`workers/webhook.py`) decodes a request body with `decode_body`, which
refuses (`BodyNotJson`, answered 400) what is not JSON pitstop can represent and store: not UTF-8, not JSON,
NaN/Infinity or numbers out of range, nested deeper than `MAX_BODY_DEPTH`, a lone UTF-16 surrogate escape.
It validates the data into `AlertmanagerWebhook`, turns each alert into an `AlertNotification` and signals
(or starts) the incident workflow whose id is `incident_id(alert)`: the alert's fingerprint plus its
`startsAt`, so every notification of one firing episode (repeats, the final `resolved`) reaches the same
incident, while the same alert firing again later opens a new one.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

AlertStatus = Literal["firing", "resolved"]

MAX_ALERTS_PER_NOTIFICATION = 1000
MAX_LABELS = 64
MAX_LABEL_VALUE = 1024
MAX_ANNOTATION_VALUE = 16_384

MAX_BODY_DEPTH = 32  # nested arrays/objects in a webhook body; Alertmanager's are 4 deep
MAX_BODY_INTEGER_DIGITS = 20  # beyond 64 bits: no Alertmanager field holds such a number

SEVERITY_ORDER: dict[str, int] = {"none": 0, "info": 1, "warning": 2, "page": 3, "error": 3, "critical": 4}


def severity_rank(severity: str) -> int:
    """Rank of a `severity` label value (unknown values rank as `warning`)."""
    return SEVERITY_ORDER.get(severity.strip().lower(), SEVERITY_ORDER["warning"])


def _check_mapping(value: dict[str, str], *, what: str, max_value: int) -> dict[str, str]:
    if len(value) > MAX_LABELS:
        raise ValueError(f"too many {what} ({len(value)} > {MAX_LABELS})")
    for key, text in value.items():
        if not key or len(key) > 256:
            raise ValueError(f"{what} name {key[:40]!r} is empty or longer than 256 characters")
        if len(text) > max_value:
            raise ValueError(f"{what} {key!r} is longer than {max_value} characters")
    return value


class Alert(BaseModel):
    """One alert of a notification, as Alertmanager sends it."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(None, alias="endsAt", description="zero time (year 1) while firing")
    generator_url: str = Field("", alias="generatorURL", max_length=4096)
    fingerprint: str = Field(pattern=r"^[0-9a-fA-F]{1,32}$", description="hash of the label set")

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        if "alertname" not in value:
            raise ValueError("an alert needs an `alertname` label")
        return _check_mapping(value, what="label", max_value=MAX_LABEL_VALUE)

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_mapping(value, what="annotation", max_value=MAX_ANNOTATION_VALUE)

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value

    @property
    def name(self) -> str:
        return self.labels["alertname"]

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "warning")

    @property
    def resolved_at(self) -> datetime | None:
        """`endsAt` of a resolved alert (None while firing: Alertmanager sends a zero or future time)."""
        if self.status != "resolved" or self.ends_at is None or self.ends_at.year < 2000:
            return None
        return self.ends_at


class AlertmanagerWebhook(BaseModel):
    """The body of one Alertmanager webhook POST (`version: "4"`)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    version: Literal["4"]
    group_key: str = Field("", alias="groupKey", max_length=4096)
    truncated_alerts: int = Field(0, alias="truncatedAlerts", ge=0)
    status: AlertStatus
    receiver: str = Field("", max_length=256)
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field("", alias="externalURL", max_length=4096)
    alerts: list[Alert] = Field(min_length=1, max_length=MAX_ALERTS_PER_NOTIFICATION)


class AlertNotification(BaseModel):
    """What the receiver hands an incident workflow: one alert, and when and how it arrived."""

    alert: Alert
    received_at: datetime = Field(description="when the receiver accepted the notification (wall clock)")
    group_key: str = ""
    receiver: str = ""
    count: int = Field(1, ge=1, description="identical notifications this signal stands for (coalesced by the receiver)")

    @property
    def incident_id(self) -> str:
        return incident_id(self.alert)


def incident_id(alert: Alert) -> str:
    """`incident-<fingerprint>-<startsAt as epoch seconds>`: one incident per firing episode of an alert."""
    return f"incident-{alert.fingerprint.lower()}-{int(alert.starts_at.timestamp())}"


def notifications_from(payload: AlertmanagerWebhook, *, received_at: datetime) -> list[AlertNotification]:
    """One notification per alert; duplicates of the same alert inside one payload collapse (latest status wins)."""
    by_incident: dict[str, AlertNotification] = {}
    for alert in payload.alerts:
        note = AlertNotification(
            alert=alert, received_at=received_at, group_key=payload.group_key, receiver=payload.receiver
        )
        by_incident[note.incident_id] = note
    return list(by_incident.values())


class BodyNotJson(ValueError):
    """A request body that is not JSON pitstop can represent and store (the webhook answers 400)."""


def _no_constant(name: str) -> Any:
    raise BodyNotJson(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BodyNotJson(f"number {text[:40]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_BODY_INTEGER_DIGITS:
        raise BodyNotJson(f"integer of {len(text)} digits is out of range")
    return int(text)


def decode_body(body: bytes) -> Any:
    """The JSON data of a webhook body, or BodyNotJson saying why not (never another exception)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyNotJson(f"body is not UTF-8: invalid byte at offset {exc.start}") from None
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except RecursionError:
        raise BodyNotJson(f"body is nested more than {MAX_BODY_DEPTH} levels deep") from None
    except ValueError as exc:  # json.JSONDecodeError, or BodyNotJson from the hooks
        raise BodyNotJson(str(exc) if isinstance(exc, BodyNotJson) else f"body is not valid JSON: {exc}") from None
    _check_shape(data)
    return data


def _check_shape(data: Any) -> None:
    """Depth at most MAX_BODY_DEPTH; every string (keys too) encodable as UTF-8 (no lone surrogate)."""
    pending: list[tuple[Any, int]] = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            _check_text(value)
        elif isinstance(value, (dict, list)):
            if depth > MAX_BODY_DEPTH:
                raise BodyNotJson(f"body is nested more than {MAX_BODY_DEPTH} levels deep")
            if isinstance(value, dict):
                for key in value:
                    _check_text(key)
                pending.extend((item, depth + 1) for item in value.values())
            else:
                pending.extend((item, depth + 1) for item in value)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BodyNotJson(f"body has a string with an unpaired UTF-16 surrogate (\\u{ord(text[exc.start]):04x})") from None
