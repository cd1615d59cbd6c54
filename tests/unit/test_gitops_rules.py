"""Pure GitOps ownership rules (pitstop/gitops.py) and the sandbox's repository layout (sandbox/flux.py)."""

from __future__ import annotations

import pytest
import yaml

from pitstop.gitops import (
    FLUX_SSA_ANNOTATION,
    DeploymentEdit,
    EngineReport,
    edit_deployment_in_manifests,
    flux_report,
    git_source,
    promotion_edit,
    revision_sha,
)
from pitstop.sandbox.fleet import expand_fleet, load_fleet_spec
from pitstop.sandbox.flux import gitops_files


def _files() -> tuple[str, list[dict]]:
    service = next(s for s in expand_fleet(load_fleet_spec(), services=12) if s.team == "team-analytics")
    files = gitops_files([service], region="eu-central")
    (path, text), = files.items()
    return path, list(yaml.safe_load_all(text))


def test_pitstop_owned_kinds_are_carved_out_and_the_deployment_names_its_source() -> None:
    path, docs = _files()
    by_kind = {d["kind"]: d for d in docs}
    assert set(by_kind) == {"Deployment", "Service", "PodDisruptionBudget", "DestinationRule", "VirtualService"}
    for kind in ("VirtualService", "DestinationRule"):
        assert by_kind[kind]["metadata"]["annotations"][FLUX_SSA_ANNOTATION] == "IfNotPresent"
    for kind in ("Deployment", "Service", "PodDisruptionBudget"):
        assert FLUX_SSA_ANNOTATION not in (by_kind[kind]["metadata"].get("annotations") or {})
    source = git_source(by_kind["Deployment"])
    assert source is not None and source.repository == "fleet-eu-central" and source.path == path
    assert git_source(by_kind["Service"]) is None


def _deployment_text() -> tuple[str, list[dict], str]:
    _, docs = _files()
    return yaml.safe_dump_all(docs, sort_keys=False), docs, docs[0]["metadata"]["name"]


def test_promotion_edit_takes_images_resources_and_version_from_the_candidate() -> None:
    template = {"metadata": {"labels": {"app": "a", "version": "v2-rs-1a2b"}},
                "spec": {"containers": [{"name": "app", "image": "img:v2",
                                         "resources": {"requests": {"cpu": "150m"}, "limits": {"memory": "256Mi"}}},
                                        {"name": "sidecar", "image": "proxy:1"}]}}
    edit = promotion_edit(template, version_label="version")
    assert edit.images == {"app": "img:v2", "sidecar": "proxy:1"}
    assert edit.resources == {"app": {"requests": {"cpu": "150m"}, "limits": {"memory": "256Mi"}}}
    assert edit.template_labels == {"version": "v2-rs-1a2b"} and edit.replicas is None


def test_an_edit_changes_only_what_it_names() -> None:
    text, docs, name = _deployment_text()
    container = docs[0]["spec"]["template"]["spec"]["containers"][0]["name"]
    edit = DeploymentEdit(images={container: "img:v2"}, resources={container: {"requests": {"cpu": "50m"}}},
                          template_labels={"version": "v2"}, replicas=7)
    edited = list(yaml.safe_load_all(edit_deployment_in_manifests(text, name=name, edit=edit)))
    after = edited[0]
    pod = after["spec"]["template"]
    assert pod["spec"]["containers"][0]["image"] == "img:v2"
    assert pod["spec"]["containers"][0]["resources"] == {"requests": {"cpu": "50m"}}
    assert pod["metadata"]["labels"]["version"] == "v2" and after["spec"]["replicas"] == 7
    before = docs[0]
    pod["spec"]["containers"][0] = before["spec"]["template"]["spec"]["containers"][0]
    pod["metadata"]["labels"]["version"] = before["spec"]["template"]["metadata"]["labels"]["version"]
    after["spec"]["replicas"] = before["spec"]["replicas"]
    assert edited == docs  # nothing else changed, other documents included


def test_a_scale_edit_leaves_the_template_alone() -> None:
    text, docs, name = _deployment_text()
    edited = list(yaml.safe_load_all(edit_deployment_in_manifests(text, name=name, edit=DeploymentEdit(replicas=3))))
    assert edited[0]["spec"]["replicas"] == 3
    assert edited[0]["spec"]["template"] == docs[0]["spec"]["template"]


def test_an_edit_names_what_is_missing() -> None:
    text, docs, name = _deployment_text()
    with pytest.raises(ValueError, match="no Deployment other"):
        edit_deployment_in_manifests(text, name="other", edit=DeploymentEdit(replicas=1))
    with pytest.raises(ValueError, match="no container sidecar"):
        edit_deployment_in_manifests(text, name=name, edit=DeploymentEdit(images={"sidecar": "i"}))


@pytest.mark.parametrize(("revision", "sha"), [
    ("main@sha1:0a1b2c", "0a1b2c"), ("sha1:0a1b2c", "0a1b2c"), ("0a1b2c", "0a1b2c"), (None, None), ("", None),
])
def test_revision_sha_reads_flux_revisions(revision: str | None, sha: str | None) -> None:
    assert revision_sha(revision) == sha


def test_flux_report_needs_ready_and_reads_the_applied_commit() -> None:
    status = {"lastAppliedRevision": "main@sha1:abc",
              "conditions": [{"type": "Reconciling", "status": "True"},
                             {"type": "Ready", "status": "False", "message": "apply failed: Deployment/x invalid"}]}
    report = flux_report({"status": status})
    assert report == EngineReport(ready=False, applied_sha="abc", message="apply failed: Deployment/x invalid")
    status["conditions"][1].update(status="True", message="Applied revision: main@sha1:abc")
    assert flux_report({"status": status}).ready
    assert flux_report({}) == EngineReport(ready=False, applied_sha=None)
