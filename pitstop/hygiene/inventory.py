"""A region's compact inventory for the fleet-hygiene checks, and how it is read from the API's own JSON.

`region_inventory(...)` turns listed Deployments, PodDisruptionBudgets, VirtualServices and DestinationRules into
`RegionInventory`: only the fields the checks use (a container's image, which requests/limits it sets, whether it
has a readinessProbe; a PDB's budget; the subsets routes point at), so a nightly run over hundreds of services keeps
its history small (see docs/limits.md). Which PodDisruptionBudgets select which Deployments (pod template
labels against the PDB's selector, same namespace) is resolved here, so labels never enter the history.
Pure: the activity (`kubernetes.inventory`) lists, this module extracts.

Team: the object's label `pitstop.dev/team` (the sandbox fleet's convention), else its namespace (the fleet's
namespaces are its teams, `team-telematics`, ...).
Hosts are qualified with the object's namespace when given short (`api` in `shop` -> `api.shop`), so a
VirtualService and a DestinationRule in different namespaces compare correctly (`traffic_routes.same_host`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, Field

from pitstop.runbook.step_types import StepResult

TEAM_LABEL = "pitstop.dev/team"
SYSTEM_NAMESPACES = ["kube-system", "kube-public", "kube-node-lease"]

JsonObject = Mapping[str, Any]
IntOrPercent = int | str


class SelectorRequirement(BaseModel):
    key: str
    operator: str = Field(description="In, NotIn, Exists, DoesNotExist")
    values: list[str] = Field(default_factory=list)


class LabelSelector(BaseModel):
    """A Kubernetes LabelSelector; empty selects everything (in the object's namespace)."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[SelectorRequirement] = Field(default_factory=list)

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for req in self.match_expressions:
            present, value = req.key in labels, labels.get(req.key)
            ok = {
                "In": present and value in req.values,
                "NotIn": not present or value not in req.values,
                "Exists": present,
                "DoesNotExist": not present,
            }.get(req.operator, False)  # an unknown operator selects nothing (the API server rejects it anyway)
            if not ok:
                return False
        return True


class ContainerFacts(BaseModel):
    name: str
    image: str
    requests: list[str] = Field(default_factory=list, description="resource names with a request (cpu, memory, ...)")
    limits: list[str] = Field(default_factory=list, description="resource names with a limit")
    readiness_probe: bool = False


class DeploymentFacts(BaseModel):
    namespace: str
    name: str
    team: str
    replicas: int = Field(description="spec.replicas (absent = 1)")
    containers: list[ContainerFacts] = Field(default_factory=list)
    disruption_budgets: list[str] = Field(default_factory=list, description="PDBs of its namespace selecting its pods")


class DisruptionBudgetFacts(BaseModel):
    namespace: str
    name: str
    team: str
    selects_pods: bool = Field(True, description="False for a null selector, which selects no pod")
    min_available: IntOrPercent | None = None
    max_unavailable: IntOrPercent | None = None
    deployments: list[str] = Field(default_factory=list, description="Deployments of its namespace whose pods it selects")
    replicas: int = Field(0, description="their replicas together")


class RouteDestination(BaseModel):
    host: str = Field(description="qualified with the VirtualService's namespace when given short")
    subset: str


class VirtualServiceFacts(BaseModel):
    namespace: str
    name: str
    team: str
    destinations: list[RouteDestination] = Field(
        default_factory=list, description="route and mirror destinations that name a subset (http, tcp, tls)"
    )


class DestinationRuleFacts(BaseModel):
    namespace: str
    name: str
    host: str = Field(description="qualified with the DestinationRule's namespace when given short")
    subsets: list[str] = Field(default_factory=list)


class RegionInventory(StepResult):
    """What `kubernetes.inventory` read in one region (the input of `hygiene.report`)."""

    region: str
    deployments: list[DeploymentFacts] = Field(default_factory=list)
    disruption_budgets: list[DisruptionBudgetFacts] = Field(default_factory=list)
    virtual_services: list[VirtualServiceFacts] = Field(default_factory=list)
    destination_rules: list[DestinationRuleFacts] = Field(default_factory=list)


# ---------------------------------------------------------------- extraction from the API's JSON


def _meta(obj: JsonObject) -> JsonObject:
    return obj.get("metadata") or {}


def team_of(obj: JsonObject) -> str:
    meta = _meta(obj)
    return str((meta.get("labels") or {}).get(TEAM_LABEL) or meta.get("namespace", ""))


def qualified_host(host: str, namespace: str) -> str:
    """`api` in namespace `shop` -> `api.shop`; a host with a dot is left as it is."""
    return host if "." in host or not host else f"{host}.{namespace}"


def label_selector(selector: JsonObject | None) -> LabelSelector | None:
    if selector is None:
        return None
    return LabelSelector(
        match_labels=dict(selector.get("matchLabels") or {}),
        match_expressions=[
            SelectorRequirement(key=e.get("key", ""), operator=e.get("operator", ""), values=list(e.get("values") or []))
            for e in selector.get("matchExpressions") or []
        ],
    )


def deployment_facts(dep: JsonObject) -> DeploymentFacts:
    meta, spec = _meta(dep), dep.get("spec") or {}
    template = spec.get("template") or {}
    containers = []
    for c in (template.get("spec") or {}).get("containers") or []:
        resources = c.get("resources") or {}
        containers.append(ContainerFacts(
            name=c.get("name", ""), image=c.get("image", ""),
            requests=sorted(resources.get("requests") or {}), limits=sorted(resources.get("limits") or {}),
            readiness_probe=bool(c.get("readinessProbe")),
        ))
    replicas = spec.get("replicas")
    return DeploymentFacts(
        namespace=meta.get("namespace", ""), name=meta.get("name", ""), team=team_of(dep),
        replicas=1 if replicas is None else int(replicas), containers=containers,
    )


def _pod_labels(dep: JsonObject) -> Mapping[str, str]:
    return _meta((dep.get("spec") or {}).get("template") or {}).get("labels") or {}


def disruption_budget_facts(pdb: JsonObject, deployments: Iterable[JsonObject] = ()) -> DisruptionBudgetFacts:
    """The PDB's budget and the Deployments (of its namespace, among `deployments`) whose pods it selects."""
    meta, spec = _meta(pdb), pdb.get("spec") or {}
    selector = label_selector(spec.get("selector"))
    facts = DisruptionBudgetFacts(
        namespace=meta.get("namespace", ""), name=meta.get("name", ""), team=team_of(pdb), selects_pods=selector is not None,
        min_available=spec.get("minAvailable"), max_unavailable=spec.get("maxUnavailable"),
    )
    for dep in deployments:
        if selector is not None and _meta(dep).get("namespace", "") == facts.namespace and selector.matches(_pod_labels(dep)):
            facts.deployments.append(_meta(dep).get("name", ""))
            replicas = (dep.get("spec") or {}).get("replicas")
            facts.replicas += 1 if replicas is None else int(replicas)
    return facts


def virtual_service_facts(vs: JsonObject) -> VirtualServiceFacts:
    meta, spec = _meta(vs), vs.get("spec") or {}
    namespace = meta.get("namespace", "")
    found: dict[tuple[str, str], RouteDestination] = {}
    for kind in ("http", "tcp", "tls"):
        for route in spec.get(kind) or []:
            targets = [d.get("destination") or {} for d in route.get("route") or []]
            targets.append(route.get("mirror") or {})
            for dest in targets:
                if dest.get("subset"):
                    host = qualified_host(str(dest.get("host", "")), namespace)
                    found[(host, dest["subset"])] = RouteDestination(host=host, subset=dest["subset"])
    return VirtualServiceFacts(
        namespace=namespace, name=meta.get("name", ""), team=team_of(vs), destinations=[found[k] for k in sorted(found)]
    )


def destination_rule_facts(dr: JsonObject) -> DestinationRuleFacts:
    meta, spec = _meta(dr), dr.get("spec") or {}
    namespace = meta.get("namespace", "")
    return DestinationRuleFacts(
        namespace=namespace, name=meta.get("name", ""), host=qualified_host(str(spec.get("host", "")), namespace),
        subsets=[str(s["name"]) for s in spec.get("subsets") or [] if s.get("name")],
    )


def region_inventory(
    *,
    region: str,
    deployments: Iterable[JsonObject],
    disruption_budgets: Iterable[JsonObject],
    virtual_services: Iterable[JsonObject],
    destination_rules: Iterable[JsonObject],
    exclude_namespaces: Iterable[str] = (),
) -> RegionInventory:
    """The region's inventory, objects of `exclude_namespaces` left out."""
    excluded = set(exclude_namespaces)

    def kept(objects: Iterable[JsonObject]) -> list[JsonObject]:
        return [o for o in objects if _meta(o).get("namespace", "") not in excluded]

    listed = kept(deployments)
    budgets = [disruption_budget_facts(o, listed) for o in kept(disruption_budgets)]
    facts = [deployment_facts(o) for o in listed]
    for dep in facts:
        dep.disruption_budgets = [b.name for b in budgets if b.namespace == dep.namespace and dep.name in b.deployments]
    inventory = RegionInventory(
        region=region,
        deployments=facts,
        disruption_budgets=budgets,
        virtual_services=[virtual_service_facts(o) for o in kept(virtual_services)],
        destination_rules=[destination_rule_facts(o) for o in kept(destination_rules)],
    )
    inventory.summary = (
        f"{region}: {len(inventory.deployments)} Deployments, {len(inventory.disruption_budgets)} PodDisruptionBudgets, "
        f"{len(inventory.virtual_services)} VirtualServices, {len(inventory.destination_rules)} DestinationRules"
    )
    return inventory
