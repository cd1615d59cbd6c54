"""Durable undo values: what a mutating step found before it changed an object, recorded on the object.

A step whose output feeds a compensation or a rollback (`kubernetes.scale` -> `previous_replicas`,
`kubernetes.set_image` -> `previous_image`, `kubernetes.rollout_undo` -> `from_revision`, `istio.set_weights`
-> `previous`) must return the same output when Temporal retries it after the change already went through
(a worker killed between the write and the recorded result). Re-reading the object then would report the
new value as the previous one, and the compensation would "restore" the change.

So the step writes, in the same write as its change, one entry `{step key: previous value}` into the
object's annotation `pitstop.io/undo-values` (a JSON object, oldest entry first). A retry that finds its own
key returns the recorded value. The step key is attempt-independent (`activities.idempotency.undo_key`); it
is stored as a digest so entries have a bounded size, and the record keeps only the newest entries.

Pure functions over the annotation's text; the activities do the reading and writing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter, ValidationError

UNDO_VALUES_ANNOTATION = "pitstop.io/undo-values"
MAX_ENTRIES = 16  # far more steps than can be in flight on one object at a time (runs hold a lease per target)
MAX_CHARS = 8192  # the annotation's text; Kubernetes allows 256 KiB for all annotations of an object together
DIGEST_CHARS = 24
EARLIER_ATTEMPT = " (by an earlier attempt of this step)"  # ends the summary of a retry that found its record

T = TypeVar("T")


@dataclass(frozen=True)
class Recorded(Generic[T]):
    """A previous value an earlier attempt of the step recorded."""

    value: T


def entry_key(step_key: str) -> str:
    """The digest under which a step's previous value is recorded (bounded, whatever the step key's length)."""
    return hashlib.sha256(step_key.encode("utf-8")).hexdigest()[:DIGEST_CHARS]


def decode(text: str | None) -> dict[str, Any]:
    """The record in an annotation's text; {} when absent or unreadable (e.g. edited by hand)."""
    if not text:
        return {}
    try:
        record = json.loads(text)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def recorded_previous(annotations: Mapping[str, str] | None, step_key: str, value_type: type[T]) -> Recorded[T] | None:
    """The previous value recorded for `step_key`, if an earlier attempt recorded one of `value_type`."""
    record = decode((annotations or {}).get(UNDO_VALUES_ANNOTATION))
    key = entry_key(step_key)
    if key not in record:
        return None
    try:
        return Recorded(TypeAdapter(value_type).validate_python(record[key], strict=True))
    except ValidationError:
        return None


def with_previous(annotations: Mapping[str, str] | None, step_key: str, previous: Any) -> str:
    """The annotation's new text: the record with `step_key -> previous` as the newest entry (an entry already
    recorded for the key is kept: the first attempt saw the original), pruned to the newest MAX_ENTRIES entries
    and MAX_CHARS characters. The new entry itself is always kept."""
    record = decode((annotations or {}).get(UNDO_VALUES_ANNOTATION))
    key = entry_key(step_key)
    value = record.pop(key, previous)
    entries = list(record.items())[-(MAX_ENTRIES - 1):] + [(key, value)]
    while True:
        text = json.dumps(dict(entries), separators=(",", ":"), sort_keys=False)
        if len(text) <= MAX_CHARS or len(entries) == 1:
            return text
        entries.pop(0)
