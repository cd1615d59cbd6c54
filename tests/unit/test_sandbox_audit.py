"""Counting writes in a kube-apiserver audit log (`sandbox.audit`): whose write, which step's key, duplicates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pitstop.undo_values import UNDO_VALUES_ANNOTATION, entry_key, with_previous
from pitstop.sandbox.audit import (
    AUDIT_POLICY,
    RESTART_KEY_ANNOTATION,
    WORKER_USER,
    AuditEvent,
    duplicated_writes,
    log_files,
    read_events,
    worker_writes,
    write_key,
)

DEPLOYMENT = {"resource": "deployments", "namespace": "kill-trials", "name": "web", "apiGroup": "apps"}


def event(verb: str = "patch", body: Any = None, *, user: str = WORKER_USER, code: int = 200,
          stage: str = "ResponseComplete", impersonated: str | None = None, n: int = 0) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request", "auditID": f"id-{n}", "stage": stage,
        "requestURI": "/apis/apps/v1/namespaces/kill-trials/deployments/web", "verb": verb,
        "user": {"username": user}, "objectRef": DEPLOYMENT, "responseStatus": {"metadata": {}, "code": code},
        "requestObject": body, "stageTimestamp": "2026-12-08T10:00:00.000000Z",
    }
    if impersonated:
        raw["impersonatedUser"] = {"username": impersonated}
    return raw


def scale_patch(*steps: str) -> dict[str, Any]:
    annotation = None
    for step in steps:
        annotation = with_previous({UNDO_VALUES_ANNOTATION: annotation} if annotation else None, step, 2)
    return {"metadata": {"annotations": {UNDO_VALUES_ANNOTATION: annotation}}, "spec": {"replicas": 4}}


def parsed(*raws: dict[str, Any]) -> list[AuditEvent]:
    return [AuditEvent.model_validate(r) for r in raws]


def test_a_patch_belongs_to_the_newest_undo_entry_it_carries() -> None:
    scale, compensation = parsed(event(body=scale_patch("run/scale@1")), event(body=scale_patch("run/scale@1", "run/comp@1")))
    assert write_key(scale) == f"undo:{entry_key('run/scale@1')}"
    assert write_key(compensation) == f"undo:{entry_key('run/comp@1')}"
    assert duplicated_writes([scale, compensation]) == {}


def test_the_same_key_applied_twice_is_a_duplicate() -> None:
    writes = parsed(event(body=scale_patch("run/scale@1"), n=1), event(body=scale_patch("run/scale@1"), n=2))
    assert duplicated_writes(writes) == {("deployments kill-trials/web", f"undo:{entry_key('run/scale@1')}"): 2}


def test_restart_and_json_patch_keys() -> None:
    restart = event(body={"spec": {"template": {"metadata": {"annotations": {RESTART_KEY_ANNOTATION: "run/restart[0]"}}}}})
    undo_text = with_previous(None, "run/undo@1", {"from_revision": 2})
    rollback = event(body=[
        {"op": "replace", "path": "/metadata/resourceVersion", "value": "7"},
        {"op": "replace", "path": "/spec/template", "value": {"metadata": {"annotations": {RESTART_KEY_ANNOTATION: "old"}}}},
        {"op": "replace", "path": "/metadata/annotations", "value": {UNDO_VALUES_ANNOTATION: undo_text}},
    ])
    restart_event, rollback_event = parsed(restart, rollback)
    assert write_key(restart_event) == "restart:run/restart[0]"
    assert write_key(rollback_event) == f"undo:{entry_key('run/undo@1')}"


def test_whole_object_writes_are_keyed_by_their_body_without_server_fields() -> None:
    first = event("update", {"metadata": {"name": "web", "resourceVersion": "1"}, "spec": {"replicas": 2}})
    again = event("update", {"metadata": {"name": "web", "resourceVersion": "2"}, "spec": {"replicas": 2}})
    other = event("update", {"metadata": {"name": "web", "resourceVersion": "3"}, "spec": {"replicas": 3}})
    a, b, c = parsed(first, again, other)
    assert write_key(a) == write_key(b) != write_key(c)


def test_only_applied_writes_of_the_worker_count() -> None:
    events = parsed(
        event(body=scale_patch("a"), n=1),
        event(body=scale_patch("b"), code=409, n=2),
        event(body=scale_patch("c"), stage="ResponseStarted", n=3),
        event(body=scale_patch("d"), user="kwok-admin", n=4),
        event(body=scale_patch("e"), user="kwok-admin", impersonated=WORKER_USER, n=5),
        event("get", None, n=6),
    )
    assert [e.audit_id for e in worker_writes(events)] == ["id-1", "id-5"]


def test_reading_rotated_logs_skips_a_line_being_written(tmp_path: Path) -> None:
    live, rotated = tmp_path / "audit.log", tmp_path / "audit-2026-12-08T10-00-00.000.log"
    rotated.write_text(json.dumps(event(n=1)) + "\n")
    live.write_text(json.dumps(event(n=2)) + "\n" + json.dumps(event(n=3))[:40])
    assert log_files(live) == [rotated, live]
    assert [e.audit_id for e in read_events(log_files(live))] == ["id-1", "id-2"]


def test_the_policy_logs_writes_only_and_keeps_the_workers_bodies() -> None:
    rules = AUDIT_POLICY["rules"]
    assert isinstance(rules, list)
    assert rules[-1] == {"level": "None"}, "anything not matched (reads) is not logged"
    assert any(r.get("level") == "Request" and r.get("users") == [WORKER_USER] for r in rules)
