"""Pure GitOps ownership rules (pitstop/gitops.py) and the sandbox's repository layout (sandbox/flux.py)."""

from __future__ import annotations

import pytest
import yaml

from pitstop.gitops import FLUX_SSA_ANNOTATION, git_source, promote_in_manifests
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


def test_promotion_edits_only_the_template_image_and_version() -> None:
    path, docs = _files()
    text = yaml.safe_dump_all(docs, sort_keys=False)
    name = docs[0]["metadata"]["name"]
    promoted = list(yaml.safe_load_all(promote_in_manifests(text, name=name, container=None, image="img:v2",
                                                             version_label="version", version="v2")))
    before, after = docs[0], promoted[0]
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == "img:v2"
    assert after["spec"]["template"]["metadata"]["labels"]["version"] == "v2"
    after["spec"]["template"]["spec"]["containers"][0]["image"] = before["spec"]["template"]["spec"]["containers"][0]["image"]
    after["spec"]["template"]["metadata"]["labels"]["version"] = before["spec"]["template"]["metadata"]["labels"]["version"]
    assert promoted == docs  # nothing else changed


def test_promotion_names_what_is_missing() -> None:
    _, docs = _files()
    text = yaml.safe_dump_all(docs, sort_keys=False)
    with pytest.raises(ValueError, match="no Deployment other"):
        promote_in_manifests(text, name="other", container=None, image="i", version_label="version", version="v")
    with pytest.raises(ValueError, match="no container sidecar"):
        promote_in_manifests(text, name=docs[0]["metadata"]["name"], container="sidecar", image="i",
                             version_label="version", version="v")
