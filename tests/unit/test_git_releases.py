"""Releases from git, the pure rules (`pitstop.git_releases`): which Deployment waits for a release, which is paused,
which template was rejected, and what a git-started release and its revert are."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pitstop.delivery.spec import ReleaseSpec
from pitstop.delivery.workloads import candidate_deployment
from pitstop.git_releases import (
    REJECTED_ANNOTATION,
    REJECTED_KEPT,
    RELEASE_FROM_GIT_LABEL,
    Decision,
    decide,
    pending_release,
    release_values,
    released_from_git,
    revert_branch,
    revert_edit,
    running_template,
    template_hash,
    with_rejected,
)
from pitstop.gitops import PATH_ANNOTATION, REPOSITORY_ANNOTATION


def template(version: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "kpi", "version": version, "pitstop.dev/role": "stable"}},
            "spec": {"containers": [{"name": "kpi", "image": f"reg/kpi:{version}"},
                                    {"name": "proxy", "image": "reg/proxy:1"}]}}


def deployment(version: str, *, paused: bool, opted_in: bool = True, rolled_out: bool = True) -> dict[str, Any]:
    labels = {"app": "kpi", **({RELEASE_FROM_GIT_LABEL: "true"} if opted_in else {})}
    return {"metadata": {"name": "kpi", "namespace": "team-analytics", "uid": "u1", "generation": 4, "labels": labels,
                         "annotations": {REPOSITORY_ANNOTATION: "fleet-eu", PATH_ANNOTATION: "team-analytics/kpi.yaml"}},
            "spec": {"replicas": 2, "paused": paused, "selector": {"matchLabels": {"app": "kpi", "pitstop.dev/role": "stable"}},
                     "template": template(version)},
            "status": {"observedGeneration": 4, "replicas": 2, "updatedReplicas": 2 if rolled_out else 1,
                       "availableReplicas": 2}}


def replica_set(version: str, revision: int, owner: str = "u1") -> dict[str, Any]:
    rs_template = template(version)
    rs_template["metadata"]["labels"]["pod-template-hash"] = f"h{revision}"
    return {"metadata": {"name": f"kpi-h{revision}", "ownerReferences": [{"kind": "Deployment", "uid": owner}],
                         "annotations": {"deployment.kubernetes.io/revision": str(revision)}},
            "spec": {"template": rs_template}}


def test_the_running_template_is_the_newest_owned_replica_sets_without_its_hash_label() -> None:
    dep = deployment("v2", paused=True)
    sets = [replica_set("v1", 3), replica_set("v0", 2), replica_set("v9", 7, owner="someone-else")]
    assert running_template(dep, sets) == template("v1")
    assert running_template(dep, [replica_set("v9", 7, owner="someone-else")]) is None


def test_a_paused_deployment_holding_a_new_template_from_git_waits_for_its_release() -> None:
    assert decide(deployment("v2", paused=True), template("v1")) is Decision.RELEASE


def test_a_paused_deployment_whose_pods_run_its_template_has_nothing_pending() -> None:
    assert decide(deployment("v1", paused=True), template("v1")) is Decision.NOTHING


def test_an_opted_in_deployment_is_paused_once_rolled_out_and_not_during_a_rollout() -> None:
    assert decide(deployment("v1", paused=False), template("v1")) is Decision.PAUSE
    assert decide(deployment("v1", paused=False, rolled_out=False), template("v1")) is Decision.NOTHING
    assert decide(deployment("v2", paused=False), template("v1")) is Decision.NOTHING  # rolling out outside pitstop


def test_deployments_not_opted_in_or_without_a_git_source_or_replica_set_are_left_alone() -> None:
    assert decide(deployment("v2", paused=True, opted_in=False), template("v1")) is Decision.NOTHING
    no_source = deployment("v2", paused=True)
    no_source["metadata"]["annotations"] = {}
    assert not released_from_git(no_source)
    assert decide(no_source, template("v1")) is Decision.NOTHING
    assert decide(deployment("v2", paused=True), None) is Decision.NOTHING


def test_a_rejected_template_is_not_released_again_but_a_newer_one_is() -> None:
    dep = deployment("v2", paused=True)
    dep["metadata"]["annotations"][REJECTED_ANNOTATION] = with_rejected(dep, template_hash(template("v2")))
    assert decide(dep, template("v1")) is Decision.REJECTED
    dep["spec"]["template"] = template("v3")
    assert decide(dep, template("v1")) is Decision.RELEASE


def test_the_rejected_list_keeps_each_hash_once_and_only_the_newest() -> None:
    dep = deployment("v1", paused=True)
    for n in range(REJECTED_KEPT + 3):
        dep["metadata"]["annotations"][REJECTED_ANNOTATION] = with_rejected(dep, f"h{n}")
    dep["metadata"]["annotations"][REJECTED_ANNOTATION] = with_rejected(dep, f"h{REJECTED_KEPT + 2}")
    kept = dep["metadata"]["annotations"][REJECTED_ANNOTATION].split(",")
    assert kept == [f"h{n}" for n in range(3, REJECTED_KEPT + 3)]


def test_the_template_hash_is_stable_and_tells_templates_apart() -> None:
    assert template_hash(template("v2")) == template_hash(copy.deepcopy(template("v2")))
    assert template_hash(template("v2")) != template_hash(template("v3"))


def test_a_pending_release_names_the_changed_container_and_one_workflow_id_per_template() -> None:
    dep = deployment("v2", paused=True)
    pending = pending_release(dep, template("v1"), region="eu", version_label="version")
    assert (pending.container, pending.image, pending.version, pending.running_image) == ("kpi", "reg/kpi:v2", "v2", "reg/kpi:v1")
    assert pending.workflow_id == f"git-release-eu-team-analytics-kpi-{template_hash(template('v2'))}"
    again = pending_release(copy.deepcopy(dep), template("v1"), region="eu", version_label="version")
    assert again.workflow_id == pending.workflow_id


def test_a_git_started_release_takes_the_workers_defaults_and_the_commits_image() -> None:
    pending = pending_release(deployment("v2", paused=True), template("v1"), region="eu", version_label="version")
    spec = ReleaseSpec.model_validate(release_values(pending, {"steps": [10, 50, 100], "warm_window": 0,
                                                               "image": "ignored", "service": "ignored"}))
    assert (spec.service, spec.namespace, spec.deployment, spec.container) == ("kpi", "team-analytics", "kpi", "kpi")
    assert (spec.image, spec.new_version, spec.steps) == ("reg/kpi:v2", "v2", [10, 50, 100])


def test_the_revert_puts_back_the_running_images_and_version_only() -> None:
    running = template("v1")
    running["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "2"}}
    edit = revert_edit(running, version_label="version")
    assert edit.images == {"kpi": "reg/kpi:v1", "proxy": "reg/proxy:1"}
    assert edit.template_labels == {"version": "v1"} and edit.resources == {} and edit.replicas is None
    assert revert_branch("kpi", "0123456789ab") == "pitstop/revert-kpi-01234567"


@pytest.mark.parametrize("paused", [True, False])
def test_the_candidate_is_never_opted_in_nor_paused_nor_carries_the_rejected_list(paused: bool) -> None:
    stable = deployment("v2", paused=paused)
    stable["metadata"]["annotations"][REJECTED_ANNOTATION] = "abc"
    target = ReleaseSpec(service="kpi", namespace="team-analytics", image="reg/kpi:v2").target("eu")
    candidate = candidate_deployment(stable, target, image="reg/kpi:v2", version="v2", replicas=1)
    assert RELEASE_FROM_GIT_LABEL not in candidate["metadata"]["labels"]
    assert REJECTED_ANNOTATION not in candidate["metadata"]["annotations"]
    assert "paused" not in candidate["spec"] and not released_from_git(candidate)
