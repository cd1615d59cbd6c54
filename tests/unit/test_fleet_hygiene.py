"""The fleet-hygiene checks and per-team reports (`pitstop.hygiene`), pure: each check finds its fault and stays
silent on the cases its rule leaves out; the sandbox fleet's own manifests are clean."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pitstop.hygiene.checks import findings, image_tag
from pitstop.hygiene.inventory import RegionInventory, region_inventory, virtual_service_facts
from pitstop.hygiene.report import hygiene_report
from pitstop.steps.hygiene import Check, Finding
from pitstop.sandbox.fleet import expand_fleet, fleet_manifests, load_fleet_spec

NS = "team-ota"


def deployment(name: str = "api", *, replicas: int | None = 2, image: str = "registry.example/api:1.2.3",
               probe: bool = True, resources: dict[str, Any] | None = None, team: str | None = None,
               namespace: str = NS) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "app", "image": image,
        "resources": resources if resources is not None else {
            "requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "200m", "memory": "256Mi"}},
    }
    if probe:
        container["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": 8080}}
    labels = {"pitstop.dev/team": team} if team else {}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name, "version": "v1"}}, "spec": {"containers": [container]}},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {"kind": "Deployment", "metadata": {"name": name, "namespace": namespace, "labels": labels}, "spec": spec}


def pdb(name: str = "api", *, selector: dict[str, Any] | None = None, namespace: str = NS, **budget: Any) -> dict[str, Any]:
    spec = {"selector": {"matchLabels": {"app": "api"}} if selector is None else selector, **budget}
    return {"kind": "PodDisruptionBudget", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def virtual_service(subsets: list[str], *, host: str = "api", mirror: str | None = None) -> dict[str, Any]:
    route: dict[str, Any] = {"route": [{"destination": {"host": host, "subset": s}} for s in subsets]}
    if mirror:
        route["mirror"] = {"host": host, "subset": mirror}
    return {"kind": "VirtualService", "metadata": {"name": "api", "namespace": NS}, "spec": {"http": [route]}}


def destination_rule(subsets: list[str], *, host: str = "api", namespace: str = NS) -> dict[str, Any]:
    return {"kind": "DestinationRule", "metadata": {"name": "api", "namespace": namespace},
            "spec": {"host": host, "subsets": [{"name": s, "labels": {"version": s}} for s in subsets]}}


def inventory(region: str = "eu-central", *, deployments: list[dict[str, Any]] | None = None,
              pdbs: list[dict[str, Any]] | None = None, vss: list[dict[str, Any]] | None = None,
              drs: list[dict[str, Any]] | None = None, exclude: tuple[str, ...] = ()) -> RegionInventory:
    return region_inventory(
        region=region, deployments=deployments if deployments is not None else [deployment()],
        disruption_budgets=pdbs if pdbs is not None else [pdb(maxUnavailable=1)],
        virtual_services=vss or [], destination_rules=drs or [], exclude_namespaces=exclude,
    )


def found(*inventories: RegionInventory) -> list[tuple[str, str, str, list[str]]]:
    return [(f.check.value, f.kind, f.name, f.regions) for f in findings(inventories)]


def test_a_clean_deployment_has_no_findings() -> None:
    assert findings([inventory()]) == []


@pytest.mark.parametrize("resources, missing", [
    ({}, "requests.cpu, requests.memory, limits.cpu, limits.memory"),
    ({"requests": {"cpu": "1", "memory": "1Gi"}}, "limits.cpu, limits.memory"),
    ({"requests": {"cpu": "1"}, "limits": {"cpu": "1", "memory": "1Gi"}}, "requests.memory"),
])
def test_missing_requests_or_limits_are_found(resources: dict[str, Any], missing: str) -> None:
    (finding,) = findings([inventory(deployments=[deployment(resources=resources)])])
    assert finding.check is Check.MISSING_RESOURCES and finding.detail == f"container app: no {missing}"


def test_a_container_without_readiness_probe_is_found() -> None:
    (finding,) = findings([inventory(deployments=[deployment(probe=False)])])
    assert (finding.check, finding.detail) == (Check.MISSING_READINESS_PROBE, "no readinessProbe on container app")


@pytest.mark.parametrize("image, tag, digest", [
    ("nginx", None, None),
    ("nginx:latest", "latest", None),
    ("registry:5000/team/api", None, None),
    ("registry:5000/team/api:1.2", "1.2", None),
    ("api:latest@sha256:abc", "latest", "sha256:abc"),
])
def test_image_tag_parsing(image: str, tag: str | None, digest: str | None) -> None:
    assert image_tag(image) == (tag, digest)


@pytest.mark.parametrize("image, flagged", [
    ("registry.example/api:latest", True),
    ("registry.example:5000/api", True),  # no tag means latest; the port is not a tag
    ("registry.example:5000/api:1.0", False),
    ("registry.example/api:latest@sha256:0123", False),  # pinned by digest
    ("registry.example/api@sha256:0123", False),
])
def test_latest_tag_unless_pinned_by_digest(image: str, flagged: bool) -> None:
    checks = {f.check for f in findings([inventory(deployments=[deployment(image=image)])])}
    assert (Check.LATEST_TAG in checks) is flagged


def test_a_single_replica_needs_a_pdb_selecting_its_pods() -> None:
    single = [deployment(replicas=1)]
    assert found(inventory(deployments=single, pdbs=[])) == [
        ("single_replica_without_pdb", "Deployment", "api", ["eu-central"])]
    assert found(inventory(deployments=[deployment(replicas=None)], pdbs=[])) == [  # absent replicas = 1
        ("single_replica_without_pdb", "Deployment", "api", ["eu-central"])]
    other = pdb(maxUnavailable=1, selector={"matchLabels": {"app": "other"}})
    elsewhere = pdb(maxUnavailable=1, namespace="team-identity")
    assert [c for c, *_ in found(inventory(deployments=single, pdbs=[other, elsewhere]))] == ["single_replica_without_pdb"]
    # no false positive: a PDB selecting it (by expression too), two replicas, zero replicas
    by_expression = pdb(maxUnavailable=1, selector={"matchExpressions": [{"key": "app", "operator": "In", "values": ["api"]}]})
    assert findings([inventory(deployments=single, pdbs=[pdb(maxUnavailable=1)])]) == []
    assert findings([inventory(deployments=single, pdbs=[by_expression])]) == []
    assert findings([inventory(deployments=[deployment(replicas=2)], pdbs=[])]) == []
    assert findings([inventory(deployments=[deployment(replicas=0)], pdbs=[])]) == []


@pytest.mark.parametrize("budget, replicas, blocks", [
    ({"maxUnavailable": 0}, 3, True),
    ({"maxUnavailable": "0%"}, 3, True),
    ({"maxUnavailable": 1}, 1, False),
    ({"maxUnavailable": "10%"}, 1, False),  # rounds up to 1 pod
    ({"minAvailable": 2}, 2, True),
    ({"minAvailable": 3}, 2, True),
    ({"minAvailable": "100%"}, 4, True),
    ({"minAvailable": "50%"}, 1, True),  # rounds up to 1 of 1
    ({"minAvailable": 1}, 2, False),
    ({"minAvailable": "50%"}, 3, False),  # 2 of 3
    ({"minAvailable": 1}, 0, False),  # nothing to evict
])
def test_pdb_blocking_every_eviction(budget: dict[str, Any], replicas: int, blocks: bool) -> None:
    got = findings([inventory(deployments=[deployment(replicas=replicas)], pdbs=[pdb(**budget)])])
    assert [f.check for f in got] == ([Check.PDB_BLOCKS_EVICTIONS] if blocks else [])
    if blocks:
        assert (got[0].kind, got[0].name) == ("PodDisruptionBudget", "api")


def test_pdb_min_available_counts_every_deployment_it_selects_and_is_not_judged_without_one() -> None:
    canary = deployment("api-canary", replicas=1)
    canary["spec"]["template"]["metadata"]["labels"]["app"] = "api"  # same app label as the stable pods
    assert findings([inventory(deployments=[deployment(replicas=1), canary], pdbs=[pdb(minAvailable=1)])]) == []
    (blocking,) = findings([inventory(deployments=[deployment(replicas=1), canary], pdbs=[pdb(minAvailable=2)])])
    assert blocking.detail.startswith("minAvailable 2 with 2 replica(s) selected (api, api-canary)")
    statefulset_guard = pdb(minAvailable=3, selector={"matchLabels": {"app": "db"}})
    assert findings([inventory(pdbs=[pdb(maxUnavailable=1), statefulset_guard])]) == []
    null_selector = pdb(maxUnavailable=0)
    null_selector["spec"]["selector"] = None
    assert findings([inventory(pdbs=[pdb(maxUnavailable=1), null_selector])]) == []


def test_images_differing_between_regions_are_one_finding_naming_both() -> None:
    eu = inventory("eu-central", deployments=[deployment(image="r/api:1.0")])
    us = inventory("us-east", deployments=[deployment(image="r/api:1.1")])
    (drift,) = findings([eu, us])
    assert (drift.check, drift.regions) == (Check.IMAGE_DRIFT, ["eu-central", "us-east"])
    assert drift.detail == "container app: eu-central=r/api:1.0, us-east=r/api:1.1"
    # no false positive: the same image everywhere, or a Deployment in one region only
    assert findings([eu, inventory("us-east", deployments=[deployment(image="r/api:1.0")])]) == []
    assert findings([eu, inventory("us-east", deployments=[deployment("other", image="r/other:9")])]) == []


def test_the_same_fault_in_every_region_is_one_finding() -> None:
    bad = [deployment(probe=False)]
    assert found(inventory("eu-central", deployments=bad), inventory("us-east", deployments=bad)) == [
        ("missing_readiness_probe", "Deployment", "api", ["eu-central", "us-east"])]


def test_routes_to_undefined_subsets() -> None:
    rule = destination_rule(["stable", "canary"])
    assert findings([inventory(vss=[virtual_service(["stable", "canary"])], drs=[rule])]) == []
    (missing,) = findings([inventory(vss=[virtual_service(["stable", "blue"])], drs=[rule])])
    assert (missing.check, missing.kind) == (Check.UNDEFINED_SUBSET, "VirtualService")
    assert missing.detail == "routes to subset blue of api.team-ota; its DestinationRules define only ['canary', 'stable']"
    (mirrored,) = findings([inventory(vss=[virtual_service(["stable"], mirror="shadow")], drs=[rule])])
    assert "subset shadow" in mirrored.detail
    (no_rule,) = findings([inventory(vss=[virtual_service(["stable"])], drs=[])])
    assert no_rule.detail == "routes to subset stable of api.team-ota, but no DestinationRule is for that host"


def test_hosts_compare_across_namespaces_and_forms() -> None:
    fqdn = virtual_service(["stable"], host="api.team-ota.svc.cluster.local")
    assert findings([inventory(vss=[fqdn], drs=[destination_rule(["stable"])])]) == []
    rule_elsewhere = destination_rule(["stable"], host="api.team-ota.svc.cluster.local", namespace="istio-system")
    assert findings([inventory(vss=[virtual_service(["stable"])], drs=[rule_elsewhere])]) == []
    other_namespace = destination_rule(["stable"], namespace="team-identity")  # `api` there is another service
    assert [f.check for f in findings([inventory(vss=[virtual_service(["stable"])], drs=[other_namespace])])] == [
        Check.UNDEFINED_SUBSET]
    assert [d.host for d in virtual_service_facts(virtual_service(["a"], host="api")).destinations] == ["api.team-ota"]


def test_excluded_namespaces_are_left_out() -> None:
    system = deployment("coredns", probe=False, namespace="kube-system")
    assert findings([inventory(deployments=[deployment(), system], exclude=("kube-system",))]) == []
    assert [f.namespace for f in findings([inventory(deployments=[deployment(), system])])] == ["kube-system"]


def test_reports_per_team_in_markdown_and_json() -> None:
    platform = deployment("gateway", image="r/gateway:latest", team="team-platform")
    ota_clean = deployment()
    pdbs = [pdb(maxUnavailable=1), pdb("gateway", maxUnavailable=1, selector={"matchLabels": {"app": "gateway"}})]
    report = hygiene_report([inventory(deployments=[platform, ota_clean], pdbs=pdbs),
                             inventory("us-east", deployments=[platform, ota_clean], pdbs=pdbs)])
    assert [t.team for t in report.teams] == ["team-ota", "team-platform"]  # label wins over namespace
    assert (report.regions, report.deployments, report.findings_total) == (["eu-central", "us-east"], 4, 1)
    ota, platform_report = report.team("team-ota"), report.team("team-platform")
    assert ota is not None and platform_report is not None
    assert ota.findings == [] and "No findings." in ota.markdown and ota.deployments == 2
    assert platform_report.counts == {"latest_tag": 1}
    (finding,) = platform_report.findings
    assert Finding.model_validate(finding.model_dump(mode="json")) == finding  # the JSON form round-trips
    assert "| `latest` image tag | Deployment team-ota/gateway | eu-central, us-east | container app: r/gateway:latest |" \
        in platform_report.markdown
    assert report.notification.splitlines()[1] == "- team-platform: 1 (latest_tag 1)"
    assert "teams with findings: team-platform" in report.summary


def test_markdown_cells_escape_pipes() -> None:
    bad = deployment(image="r/api:latest")
    bad["spec"]["template"]["spec"]["containers"][0]["name"] = "a|b"
    (team,) = hygiene_report([inventory(deployments=[bad])]).teams
    assert "container a\\|b: r/api:latest" in team.markdown


def test_the_sandbox_fleet_is_clean_in_every_region() -> None:
    """No false positive on the fleet the sandbox applies (40 services, with canary Deployments), two regions."""
    objects = [o for s in expand_fleet(load_fleet_spec(), services=40) for o in fleet_manifests(s)]

    def of(kind: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for o in objects if o["kind"] == kind]

    regions = [region_inventory(region=r, deployments=of("Deployment"), disruption_budgets=of("PodDisruptionBudget"),
                                virtual_services=of("VirtualService"), destination_rules=of("DestinationRule"))
               for r in ("eu-central", "us-east")]
    assert any(d.replicas == 1 for d in regions[0].deployments)  # single replicas exist and are covered
    report = hygiene_report(regions)
    assert report.findings_total == 0, [f.model_dump() for f in findings(regions)]
    assert {t.team for t in report.teams} == {"team-telematics", "team-ota", "team-identity", "team-analytics", "team-platform"}
