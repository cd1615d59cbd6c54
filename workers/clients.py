"""Construction of the real clients activities use — the only place they are built.

Per region a `kubernetes.client.ApiClient` from `settings.kubernetes.regions` (kubeconfig + context; no
kubeconfig = in-cluster config, else the default kubeconfig), rate-limited to the region's `qps`/`burst`
for the whole process (`activities.kube_api.limit_rate`). When no regions are configured, the local
sandbox's regions are used: `$PITSTOP_STATE_DIR/sandbox/kubeconfig` with one context per region name.
Prometheus is reached through `PrometheusProvider` (httpx) at `settings.prometheus.url`, Alertmanager
through `AlertmanagerApi` (httpx) at `settings.alertmanager.url`, the global traffic authority through
`HttpTrafficAuthority` at `settings.traffic.authority` (token file default: the sandbox authority's).
"""

from __future__ import annotations

from pathlib import Path

from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration
from temporalio.client import Client

from pitstop.activities.alertmanager_api import AlertmanagerApi
from pitstop.activities.clients import ActivityClients
from pitstop.activities.kube_api import limit_rate
from pitstop.activities.metrics import PrometheusProvider
from pitstop.activities.traffic_authority import HttpTrafficAuthority
from pitstop.config import RegionCluster, Settings


class ClusterConfigError(RuntimeError):
    """A region's cluster configuration cannot be loaded (missing kubeconfig, unknown context)."""


def sandbox_kubeconfig(settings: Settings) -> Path:
    return settings.state_dir / "sandbox" / "kubeconfig"


def region_clusters(settings: Settings) -> dict[str, RegionCluster]:
    """Configured regions, or the sandbox's regions in its kubeconfig (context = region name)."""
    if settings.kubernetes.regions:
        return dict(settings.kubernetes.regions)
    kubeconfig = sandbox_kubeconfig(settings)
    return {region: RegionCluster(kubeconfig=kubeconfig, context=region) for region in settings.sandbox.regions}


def sandbox_scratch_kubeconfig(settings: Settings) -> Path:
    """Where `pitstop sandbox scratch-cluster create` writes the scratch cluster's kubeconfig (context `scratch`)."""
    return settings.state_dir / "scratch" / "sandbox" / "kubeconfig"  # sandbox.scratch_cluster.scratch_kubeconfig


def restore_target_clusters(settings: Settings) -> dict[str, RegionCluster]:
    """Configured restore targets, or the sandbox's scratch cluster (target `scratch`) when it exists."""
    if settings.backup.restore_targets:
        return dict(settings.backup.restore_targets)
    kubeconfig = sandbox_scratch_kubeconfig(settings)
    return {"scratch": RegionCluster(kubeconfig=kubeconfig, context="scratch")} if kubeconfig.exists() else {}


def build_kube_client(region: str, cluster: RegionCluster) -> ApiClient:
    configuration = Configuration()
    try:
        if cluster.kubeconfig is None and cluster.context is None:
            try:
                kube_config.load_incluster_config(client_configuration=configuration)
            except kube_config.ConfigException:
                kube_config.load_kube_config(client_configuration=configuration, persist_config=False)
        else:
            if cluster.kubeconfig is not None and not cluster.kubeconfig.exists():
                raise ClusterConfigError(f"region {region}: kubeconfig {cluster.kubeconfig} does not exist")
            kube_config.load_kube_config(
                config_file=str(cluster.kubeconfig) if cluster.kubeconfig else None,
                context=cluster.context or region,
                client_configuration=configuration,
                persist_config=False,
            )
    except kube_config.ConfigException as exc:
        raise ClusterConfigError(f"region {region}: cannot load cluster config: {exc}") from exc
    api_client = ApiClient(configuration=configuration)
    limit_rate(api_client, qps=cluster.qps, burst=cluster.burst)
    return api_client


def build_metrics_provider(settings: Settings) -> PrometheusProvider:
    return PrometheusProvider(base_url=settings.prometheus.url, timeout_seconds=settings.prometheus.timeout_seconds)


def traffic_authority_token_file(settings: Settings) -> Path:
    return settings.traffic.authority.token_file or settings.state_dir / "sandbox" / "gslb" / "token"


def build_traffic_authority(settings: Settings) -> HttpTrafficAuthority:
    authority = settings.traffic.authority
    return HttpTrafficAuthority(base_url=authority.url, token_file=traffic_authority_token_file(settings),
                                timeout_seconds=authority.timeout_seconds)


def build_activity_clients(
    settings: Settings, *, temporal: Client | None = None, require_clusters: bool = False
) -> ActivityClients:
    """Clients for every region whose configuration loads. A sandbox that is not running yet is skipped
    (its regional activities then fail with "unknown region") unless `require_clusters`."""
    kube: dict[str, ApiClient] = {}
    clusters = region_clusters(settings)
    for region, cluster in clusters.items():
        try:
            kube[region] = build_kube_client(region, cluster)
        except ClusterConfigError:
            if require_clusters or settings.kubernetes.regions:
                raise
    restore_targets = {name: build_kube_client(name, cluster) for name, cluster in restore_target_clusters(settings).items()}
    metrics = build_metrics_provider(settings)
    alertmanager = AlertmanagerApi(base_url=settings.alertmanager.url)
    return ActivityClients(settings=settings, kube=kube, metrics=metrics, alertmanager=alertmanager, temporal=temporal,
                          restore_targets=restore_targets, clusters={r: c for r, c in clusters.items() if r in kube},
                          traffic_authority=build_traffic_authority(settings))
