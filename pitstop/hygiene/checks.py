"""The fleet-hygiene checks: `findings(inventories) -> list[Finding]`, pure, over every region's inventory.

What each check flags (and, as precisely, what it does not):
- `missing_resources`: a container of a Deployment's pod template without a cpu or memory request, or without a
  cpu or memory limit. (A namespace LimitRange may fill them in at admission; the manifest still lacks them.)
- `missing_readiness_probe`: a container without a readinessProbe (init containers are not checked).
- `latest_tag`: an image tagged `latest`, or with no tag at all (which means `latest`), unless pinned by digest
  (`@sha256:...`).
- `single_replica_without_pdb`: `spec.replicas` is 1 and no PodDisruptionBudget of its namespace selects its pod
  template's labels: a node drain takes the service down without anyone having said that is acceptable.
  0 replicas (scaled down on purpose) is not flagged; HorizontalPodAutoscalers are not read.
- `pdb_blocks_evictions`: a PodDisruptionBudget that never allows an eviction, so node drains hang:
  `maxUnavailable` 0 (or `0%`); or `minAvailable` at least the replicas of the Deployments it selects
  (a percentage rounds up, as the disruption controller rounds it: 50% of 1 replica is 1). A `minAvailable` PDB
  selecting no Deployment's pods is not judged (it may guard a StatefulSet). A null selector selects nothing.
- `image_drift`: the same Deployment container runs different images in different regions. A Deployment
  present in one region only is not flagged.
- `undefined_subset`: a VirtualService route (or mirror) names a subset that no DestinationRule in the same
  region defines for that host (Istio answers such requests with 503 NR). Every DestinationRule of the
  cluster counts, whatever its namespace or `exportTo`, so this check errs toward silence.

A finding found in several regions with the same detail is one finding listing those regions.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

from pitstop.steps.hygiene import Check, Finding
from pitstop.traffic_routes import same_host

from .inventory import DeploymentFacts, DisruptionBudgetFacts, IntOrPercent, RegionInventory

REQUIRED_RESOURCES = ("cpu", "memory")


CHECK_TITLES: dict[Check, str] = {
    Check.MISSING_RESOURCES: "requests/limits missing",
    Check.MISSING_READINESS_PROBE: "no readiness probe",
    Check.LATEST_TAG: "`latest` image tag",
    Check.SINGLE_REPLICA_WITHOUT_PDB: "single replica without PodDisruptionBudget",
    Check.PDB_BLOCKS_EVICTIONS: "PodDisruptionBudget blocks every eviction",
    Check.IMAGE_DRIFT: "images differ between regions",
    Check.UNDEFINED_SUBSET: "route to a subset no DestinationRule defines",
}


# ---------------------------------------------------------------- per object


def image_tag(image: str) -> tuple[str | None, str | None]:
    """(tag, digest) of an image reference; a registry port (`host:5000/app`) is not a tag."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else None
    return tag, digest or None


def missing_resources(dep: DeploymentFacts) -> str | None:
    parts = []
    for c in dep.containers:
        missing = [f"requests.{r}" for r in REQUIRED_RESOURCES if r not in c.requests]
        missing += [f"limits.{r}" for r in REQUIRED_RESOURCES if r not in c.limits]
        if missing:
            parts.append(f"container {c.name}: no {', '.join(missing)}")
    return "; ".join(parts) or None


def missing_readiness_probe(dep: DeploymentFacts) -> str | None:
    without = [c.name for c in dep.containers if not c.readiness_probe]
    return f"no readinessProbe on container {', '.join(without)}" if without else None


def latest_tag(dep: DeploymentFacts) -> str | None:
    parts = []
    for c in dep.containers:
        tag, digest = image_tag(c.image)
        if digest is None and tag in (None, "latest"):
            parts.append(f"container {c.name}: {c.image}{'' if tag else ' (no tag means latest)'}")
    return "; ".join(parts) or None


def _scaled(value: IntOrPercent, total: int) -> int | None:
    """An IntOrString budget as a pod count of `total` (percentages round up); None when unreadable."""
    if isinstance(value, int):
        return value
    text = value.strip()
    try:
        return math.ceil(float(text[:-1]) * total / 100) if text.endswith("%") else int(text)
    except ValueError:
        return None


def blocks_evictions(pdb: DisruptionBudgetFacts) -> str | None:
    """Why the PDB never allows an eviction, or None (see the module docstring for the rule)."""
    if not pdb.selects_pods:
        return None
    if pdb.max_unavailable is not None:
        if _scaled(pdb.max_unavailable, 100) == 0:
            return f"maxUnavailable {pdb.max_unavailable}: no pod it selects can ever be evicted, node drains hang"
        return None
    if pdb.min_available is None:
        return None
    required = _scaled(pdb.min_available, pdb.replicas)
    if pdb.replicas == 0 or required is None or required < pdb.replicas:
        return None
    return (f"minAvailable {pdb.min_available} with {pdb.replicas} replica(s) selected ({', '.join(pdb.deployments)}): "
            "no eviction is ever allowed, node drains hang")


# ---------------------------------------------------------------- across a region, across regions


class _Collector:
    """Findings keyed by everything but the region, so one fault in every region is one finding."""

    def __init__(self) -> None:
        self._regions: dict[tuple[Check, str, str, str, str, str], list[str]] = defaultdict(list)

    def add(self, check: Check, *, team: str, namespace: str, kind: str, name: str, region: str, detail: str) -> None:
        regions = self._regions[(check, team, namespace, kind, name, detail)]
        if region not in regions:
            regions.append(region)

    def findings(self) -> list[Finding]:
        found = [
            Finding(check=check, team=team, namespace=ns, kind=kind, name=name, regions=sorted(regions), detail=detail)
            for (check, team, ns, kind, name, detail), regions in self._regions.items()
        ]
        return sorted(found, key=Finding.sort_key)


def _region_checks(inv: RegionInventory, out: _Collector) -> None:
    deployment_checks = (
        (Check.MISSING_RESOURCES, missing_resources),
        (Check.MISSING_READINESS_PROBE, missing_readiness_probe),
        (Check.LATEST_TAG, latest_tag),
    )
    for dep in inv.deployments:
        for check, rule in deployment_checks:
            detail = rule(dep)
            if detail:
                out.add(check, team=dep.team, namespace=dep.namespace, kind="Deployment", name=dep.name,
                        region=inv.region, detail=detail)
        if dep.replicas == 1 and not dep.disruption_budgets:
            out.add(Check.SINGLE_REPLICA_WITHOUT_PDB, team=dep.team, namespace=dep.namespace, kind="Deployment",
                    name=dep.name, region=inv.region,
                    detail="1 replica and no PodDisruptionBudget selects its pods: a node drain takes it down")
    for pdb in inv.disruption_budgets:
        detail = blocks_evictions(pdb)
        if detail:
            out.add(Check.PDB_BLOCKS_EVICTIONS, team=pdb.team, namespace=pdb.namespace, kind="PodDisruptionBudget",
                    name=pdb.name, region=inv.region, detail=detail)
    for vs in inv.virtual_services:
        for dest in vs.destinations:
            rules = [r for r in inv.destination_rules if same_host(r.host, dest.host, vs.namespace)]
            if not rules:
                detail = f"routes to subset {dest.subset} of {dest.host}, but no DestinationRule is for that host"
            elif not any(dest.subset in r.subsets for r in rules):
                defined = sorted({s for r in rules for s in r.subsets})
                detail = f"routes to subset {dest.subset} of {dest.host}; its DestinationRules define only {defined}"
            else:
                continue
            out.add(Check.UNDEFINED_SUBSET, team=vs.team, namespace=vs.namespace, kind="VirtualService",
                    name=vs.name, region=inv.region, detail=detail)


def _image_drift(inventories: list[RegionInventory], out: _Collector) -> None:
    images: dict[tuple[str, str, str], dict[str, str]] = defaultdict(dict)  # (ns, deployment, container) -> region -> image
    teams: dict[tuple[str, str], str] = {}
    for inv in inventories:
        for dep in inv.deployments:
            teams.setdefault((dep.namespace, dep.name), dep.team)
            for c in dep.containers:
                images[(dep.namespace, dep.name, c.name)][inv.region] = c.image
    for (namespace, name, container), by_region in sorted(images.items()):
        if len(by_region) < 2 or len(set(by_region.values())) < 2:
            continue
        detail = f"container {container}: " + ", ".join(f"{r}={by_region[r]}" for r in sorted(by_region))
        for region in by_region:
            out.add(Check.IMAGE_DRIFT, team=teams[(namespace, name)], namespace=namespace, kind="Deployment",
                    name=name, region=region, detail=detail)


def findings(inventories: Iterable[RegionInventory]) -> list[Finding]:
    """Every finding of every check over the regions' inventories, sorted by team, check and object."""
    regions = list(inventories)
    out = _Collector()
    for inv in regions:
        _region_checks(inv, out)
    _image_drift(regions, out)
    return out.findings()
