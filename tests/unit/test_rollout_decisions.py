"""kubectl's rollout logic as pure functions: rollout status, undo target, rollback patch."""

from __future__ import annotations

import pytest

from pitstop.rollout import previous_revision, rollback_patch, rollout_progress, same_template


def deployment(*, generation: int = 2, observed: int = 2, replicas: int = 3, updated: int = 3, total: int = 3,
               available: int = 3, conditions: list[dict[str, str]] | None = None) -> dict:
    return {
        "metadata": {"name": "api", "generation": generation, "resourceVersion": "42",
                     "annotations": {"deployment.kubernetes.io/revision": "3", "team": "ota"}},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": observed, "updatedReplicas": updated, "replicas": total,
                   "availableReplicas": available, "conditions": conditions or []},
    }


@pytest.mark.parametrize(
    ("dep", "done", "failed", "fragment"),
    [
        (deployment(), True, False, "successfully rolled out"),
        (deployment(generation=3, observed=2), False, False, "spec update"),
        (deployment(updated=1), False, False, "1 out of 3 new replicas"),
        (deployment(total=5), False, False, "2 old replicas are pending termination"),
        (deployment(available=2), False, False, "2 of 3 updated replicas are available"),
        (deployment(updated=1, conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "m"}]),
         False, True, "exceeded its progress deadline"),
    ],
)
def test_rollout_progress_like_kubectl(dep: dict, done: bool, failed: bool, fragment: str) -> None:
    progress = rollout_progress(dep)
    assert (progress.done, progress.failed) == (done, failed)
    assert fragment in progress.message


def rs(revision: int, image: str) -> dict:
    return {
        "metadata": {"annotations": {"deployment.kubernetes.io/revision": str(revision), "team": "ota",
                                     "deployment.kubernetes.io/desired-replicas": "3"}},
        "spec": {"template": {"metadata": {"labels": {"app": "api", "pod-template-hash": f"h{revision}"}},
                              "spec": {"containers": [{"name": "app", "image": image}]}}},
    }


def test_previous_revision_is_the_second_highest() -> None:
    assert previous_revision([rs(1, "a"), rs(4, "d"), rs(3, "c")]) == 3
    assert previous_revision([rs(2, "b")]) == 0
    assert previous_revision([]) == 0


def test_rollback_patch_copies_template_without_hash_and_keeps_revision_annotation() -> None:
    dep = deployment()
    patch = rollback_patch(dep, rs(2, "img:v1"), extra_annotations={"pitstop.io/undo-key": "run/step"})
    ops = {op["path"]: op for op in patch}
    assert ops["/metadata/resourceVersion"]["value"] == "42"  # optimistic concurrency: 409 on a concurrent change
    template = ops["/spec/template"]["value"]
    assert template["metadata"]["labels"] == {"app": "api"}
    assert template["spec"]["containers"][0]["image"] == "img:v1"
    assert ops["/metadata/annotations"]["value"] == {
        "deployment.kubernetes.io/revision": "3", "team": "ota", "pitstop.io/undo-key": "run/step"
    }


def test_same_template_ignores_the_hash_label() -> None:
    a = rs(1, "x")["spec"]["template"]
    b = rs(2, "x")["spec"]["template"]
    assert same_template(a, b)
    assert not same_template(a, rs(3, "y")["spec"]["template"])
