"""The sandbox kube-apiservers' audit log: the policy they are started with, and counting writes in the log.

Every sandbox cluster's kube-apiserver writes an audit log (`<kwok workdir>/clusters/<name>/logs/audit.log`,
kwokctl's `--kube-audit-policy`), rotated at `AUDIT_LOG_MAX_MB` with one old file kept. The policy records
write verbs only and leaves out the high-volume writes nobody asked about (Leases renewed by every node and
controller, Events):

- writes by pitstop's worker service account (`WORKER_USER`) at level `Request`: the request body is kept, so a
  write's idempotency key can be read from it (the step's entry in `pitstop.io/undo-values`, the
  `pitstop.io/restart-key` of a rollout restart);
- every other write at level `Metadata` (who, verb, object, response code; no bodies).

Measured on the test sandbox: ~1 KB per event; creating and populating a cluster logs ~800-1,000 events
(0.8-1 MB); reads never enter the log.

`worker_writes` parses a log into typed events and `write_key` tells which step a write belongs to; what counts
as a duplicate is `duplicated_writes`: two successful writes to one object carrying the same idempotency key.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pitstop.undo_values import UNDO_VALUES_ANNOTATION, decode

WORKER_USER = "system:serviceaccount:pitstop:pitstop-worker"
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
AUDIT_LOG_MAX_MB = 64
AUDIT_LOG_MAX_BACKUPS = 1
RESTART_KEY_ANNOTATION = "pitstop.io/restart-key"  # activities.kubernetes writes it on a rollout restart
# fields a server fills in; two writes of the same desired state differ only in them
_SERVER_FIELDS = ("resourceVersion", "managedFields", "generation", "uid", "creationTimestamp")

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "resources": [
            {"group": "coordination.k8s.io", "resources": ["leases"]},
            {"group": "", "resources": ["events"]},
            {"group": "events.k8s.io", "resources": ["events"]},
        ]},
        {"level": "Request", "users": [WORKER_USER], "verbs": list(WRITE_VERBS)},
        {"level": "Metadata", "verbs": list(WRITE_VERBS)},
        {"level": "None"},
    ],
}  # fmt: skip


def write_audit_policy(target: Path) -> Path:
    """The policy file kwokctl copies into the cluster's workdir (`--kube-audit-policy`)."""
    target.write_text(json.dumps(AUDIT_POLICY, indent=2) + "\n")
    return target


def audit_log_path(*, kwok_workdir: Path, cluster_name: str) -> Path:
    """Where kwokctl's binary runtime has the kube-apiserver of cluster `cluster_name` write its audit log."""
    return kwok_workdir / "clusters" / cluster_name / "logs" / "audit.log"


class AuditUser(BaseModel):
    username: str = ""


class ObjectRef(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    resource: str = ""
    namespace: str = ""
    name: str = ""
    api_group: str = Field("", alias="apiGroup")
    subresource: str = ""


class ResponseStatus(BaseModel):
    code: int = 0


class AuditEvent(BaseModel):
    """One audit.k8s.io/v1 Event (the fields this module reads)."""

    model_config = ConfigDict(populate_by_name=True)

    audit_id: str = Field(alias="auditID")
    stage: str
    verb: str
    request_uri: str = Field(alias="requestURI")
    user: AuditUser
    impersonated_user: AuditUser | None = Field(None, alias="impersonatedUser")
    object_ref: ObjectRef | None = Field(None, alias="objectRef")
    response_status: ResponseStatus | None = Field(None, alias="responseStatus")
    request_object: Any = Field(None, alias="requestObject")
    stage_timestamp: str = Field("", alias="stageTimestamp")

    @property
    def acting_user(self) -> str:
        """Whose write it is: the impersonated user if any, else the authenticated one."""
        return (self.impersonated_user or self.user).username

    @property
    def succeeded(self) -> bool:
        return self.response_status is not None and 200 <= self.response_status.code < 300

    @property
    def object_key(self) -> str:
        """`resource[/subresource] namespace/name` of the written object."""
        ref = self.object_ref or ObjectRef()
        resource = f"{ref.resource}/{ref.subresource}" if ref.subresource else ref.resource
        return f"{resource} {ref.namespace}/{ref.name}"


def read_events(paths: Iterable[Path]) -> Iterator[AuditEvent]:
    """The events of audit log files (oldest file first); a line the server is still writing is skipped."""
    for path in paths:
        if not path.exists():
            continue
        with path.open() as lines:
            for line in lines:
                try:
                    yield AuditEvent.model_validate_json(line)
                except ValidationError:
                    continue


def log_files(log: Path) -> list[Path]:
    """The live log and its rotated backups (`audit-<timestamp>.log`), oldest first."""
    return sorted(log.parent.glob(f"{log.stem}-*{log.suffix}")) + [log]


def worker_writes(events: Iterable[AuditEvent], *, user: str = WORKER_USER) -> list[AuditEvent]:
    """The writes of `user` that the API server applied (2xx, response complete)."""
    return [
        e for e in events
        if e.stage == "ResponseComplete" and e.verb in WRITE_VERBS and e.acting_user == user and e.succeeded
    ]  # fmt: skip


def write_key(event: AuditEvent) -> str:
    """Which step's write this is. A patch carrying a new `pitstop.io/undo-values` entry belongs to that entry's
    step (the newest entry is the one the patch adds); a patch carrying `pitstop.io/restart-key` to that key.
    Any other write (a release's absolute-state writes: Deployments and routes put whole) is keyed by its body
    without server-filled fields: writing the same desired state twice counts as a duplicate."""
    body = event.request_object
    if event.verb == "patch":
        undo = _annotation(body, UNDO_VALUES_ANNOTATION)
        if undo:
            entries = list(decode(undo))
            if entries:
                return f"undo:{entries[-1]}"
        restart = _annotation(body, RESTART_KEY_ANNOTATION)
        if restart:
            return f"restart:{restart}"
    digest = hashlib.sha256(json.dumps(_without_server_fields(body), sort_keys=True).encode()).hexdigest()[:16]
    return f"{event.verb}:{digest}"


def write_counts(writes: Iterable[AuditEvent]) -> Counter[tuple[str, str]]:
    """(object, write key) -> how many times the API server applied it."""
    return Counter((e.object_key, write_key(e)) for e in writes)


def duplicated_writes(writes: Iterable[AuditEvent]) -> dict[tuple[str, str], int]:
    """(object, write key) -> count, for every key applied more than once."""
    return {key: count for key, count in write_counts(writes).items() if count > 1}


def _annotation(body: Any, name: str) -> str | None:
    """The value of annotation `name` anywhere in a request body (merge/strategic patch, JSON patch ops, object)."""
    if isinstance(body, dict):
        annotations = body.get("annotations")
        if isinstance(annotations, dict) and isinstance(annotations.get(name), str):
            return str(annotations[name])
        if body.get("op") in ("add", "replace"):  # a JSON patch operation
            path, value = str(body.get("path", "")), body.get("value")
            if path.endswith("/" + name.replace("/", "~1")) and isinstance(value, str):
                return value
            if path.endswith("/annotations") and isinstance(value, dict) and isinstance(value.get(name), str):
                return str(value[name])
        for value in body.values():
            found = _annotation(value, name)
            if found:
                return found
    if isinstance(body, list):
        for item in body:
            found = _annotation(item, name)
            if found:
                return found
    return None


def _without_server_fields(body: Any) -> Any:
    if isinstance(body, dict):
        return {k: _without_server_fields(v) for k, v in body.items() if k not in _SERVER_FIELDS and k != "status"}
    if isinstance(body, list):
        return [_without_server_fields(item) for item in body]
    return body
