"""Activities: every side effect pitstop performs, one class per external system holding injected clients.

`build_activities(clients)` returns what the worker registers: activities for the main task queue and,
per region, activities that touch that region's cluster (served on task queue `pitstop-<region>`).

| module | class | activities |
|---|---|---|
| `kubernetes` | `KubernetesActivities` | `kubernetes.*` (regional, sync, thread pool), incl. the fleet inventory |
| `istio` (+ `traffic` routers) | `IstioActivities` | `istio.*` (regional, sync, thread pool) |
| `prometheus` (+ `metrics` providers) | `PrometheusActivities` | `prometheus.*` (shared, async) |
| `http` | `HttpActivities` | `http.call` (shared, async) |
| `notify` | `NotifyActivities` | `notify.*` (shared, async) |
| `incidents` | `IncidentActivities` | `incident.*` (shared, async) |
| `dependency_graph` | `DependencyGraphActivities` | `graph.discover`, `graph.order` (shared, async) |
| `traffic_authority` | `TrafficAuthorityActivities` | `traffic.get_weights`, `traffic.set_weights` (shared, async; the GSLB) |
| `failover` | `FailoverActivities`, `FailoverClusterActivities` | `region.health`, `failover.capacity_plan` (shared); `failover.capacity_inventory` (regional) |
| `hygiene` | `HygieneReports` | `hygiene.report` (shared, async; pure, no client) |
| `capacity` | `CapacityActivities` | `capacity.collect` (regional, async: Kubernetes lists + Prometheus), `capacity.report` (shared) |
| `capacity_loop` | `CapacityLoopActivities` | `capacity.loop_plan`, `capacity.canary_pods` (regional, read-only: the rightsizing loop) |
| `delivery` | `ReleaseAnalysisActivities`, `ReleaseClusterActivities` | release analysis (shared), cluster changes (regional) |
| `git_releases` | `GitReleaseActivities` | `gitops.pending_releases`, `delivery.revert_in_git` (regional: releases from git) |
| `runbook_catalog` | `RunbookCatalog` | `runbook.load` (shared) |
| `runbook_debug` | `EngineSteps`, `DebugSteps` | the engine's own steps `log`, `fail` (shared); `debug.*` (shared, only with `worker.enable_debug_steps`) |
| `chaos` | `ChaosActivities` | `chaos.phase`, `chaos.target_pods` (regional: a child process per phase) |
| `backup` | `BackupExportActivities`, `BackupRestoreActivities` | `backup.export` (regional), `backup.restore`/`backup.verify` (shared; restore targets) |
| `data_layer` | `DataLayerActivities` | `data.switch_primary` (regional; the sandbox's data hook) |
| `dr` | `DrActivities` | `dr.mark`, `dr.record` (shared; pure, no client) |
| `gitops_suspend` | `GitopsSuspendActivities` | `gitops.suspend`, `.resume`, `.resume_expired` (regional: a bounded suspend of the GitOps engine) |
| `gitops` (+ `git_access`) | functions | git commits of git-managed Deployments and the wait for the engine (used by `kubernetes.*` and `delivery.finalize_stable`) |
| `leases` | `LeaseActivities` | `lease.request`, `lease.holder_open`, `dr.region_leases` (shared; need `clients.temporal`) |

Sync activities need the worker's `activity_executor` (a ThreadPoolExecutor).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .clients import ActivityClients


@dataclass
class ActivitySet:
    shared: list[Callable[..., Any]] = field(default_factory=list)
    regional: dict[str, list[Callable[..., Any]]] = field(default_factory=dict)


def activity_methods(instance: object) -> list[Callable[..., Any]]:
    """The bound `@activity.defn` methods of an activity class instance."""
    methods = []
    for name in sorted(dir(type(instance))):
        if name.startswith("_"):
            continue
        member = getattr(instance, name)
        if callable(member) and hasattr(member, "__temporal_activity_definition"):
            methods.append(member)
    return methods


def _engine_activities(clients: ActivityClients) -> list[Callable[..., Any]]:
    """The runbook engine's own activities: the catalog, `log`/`fail`, (with a Temporal client) leases and, on test
    workers only (`worker.enable_debug_steps`), the `debug.*` steps."""
    from pitstop.runbook.reach import AuthorReach

    from .leases import LeaseActivities
    from pitstop.identity.start_claims import start_claim_key_path

    from .runbook_catalog import RunbookCatalog
    from .runbook_debug import DebugSteps, EngineSteps

    settings = clients.settings
    found = activity_methods(RunbookCatalog(settings.runbooks_dir, reach=AuthorReach.from_settings(settings),
                                            start_claim_key=start_claim_key_path(settings)))
    if clients.temporal is not None:
        found += activity_methods(LeaseActivities(clients.temporal))
    found += activity_methods(EngineSteps())
    if settings.worker.enable_debug_steps:
        found += activity_methods(DebugSteps(record_dir=settings.worker.debug_record_dir))
    return found


def build_activities(clients: ActivityClients) -> ActivitySet:
    from .chaos import ChaosActivities
    from .backup import BackupExportActivities, BackupRestoreActivities
    from .data_layer import DataLayerActivities
    from .dr import DrActivities
    from .capacity import CapacityActivities
    from .capacity_loop import CapacityLoopActivities
    from .delivery import ReleaseAnalysisActivities, ReleaseClusterActivities
    from .dependency_graph import DependencyGraphActivities
    from .failover import FailoverActivities, FailoverClusterActivities
    from .gitops_suspend import GitopsSuspendActivities
    from .git_releases import GitReleaseActivities
    from .http import HttpActivities
    from .hygiene import HygieneReports
    from .incidents import IncidentActivities
    from .istio import IstioActivities
    from .kubernetes import KubernetesActivities
    from .notify import NotifyActivities
    from .prometheus import PrometheusActivities
    from .traffic_authority import TrafficAuthorityActivities

    shared = [
        *activity_methods(PrometheusActivities(clients)),
        *activity_methods(HttpActivities(clients)),
        *activity_methods(NotifyActivities(clients)),
        *activity_methods(IncidentActivities(clients)),
        *activity_methods(HygieneReports()),
        CapacityActivities(clients).report,
        *activity_methods(DependencyGraphActivities(clients)),
        *activity_methods(TrafficAuthorityActivities(clients)),
        *activity_methods(FailoverActivities(clients)),
        *activity_methods(ReleaseAnalysisActivities(clients)),
        *activity_methods(BackupRestoreActivities(clients)),
        *activity_methods(DrActivities()),
        *_engine_activities(clients),
    ]
    regional: dict[str, list[Callable[..., Any]]] = {}
    for region in clients.kube:
        scoped = clients.for_region(region)  # a regional worker only ever touches its own cluster
        regional[region] = [
            *activity_methods(KubernetesActivities(scoped)),
            *activity_methods(IstioActivities(scoped)),
            *activity_methods(ReleaseClusterActivities(scoped)),
            *activity_methods(GitReleaseActivities(scoped)),
            *activity_methods(ChaosActivities(scoped, region)),
            *activity_methods(BackupExportActivities(scoped)),
            *activity_methods(DataLayerActivities(scoped)),
            CapacityActivities(scoped).collect,
            *activity_methods(CapacityLoopActivities(scoped)),
            *activity_methods(FailoverClusterActivities(scoped)),
            *activity_methods(GitopsSuspendActivities(scoped)),
        ]
    return ActivitySet(shared=shared, regional=regional)
