"""`ActivityClients`: the injected clients every activity class holds.

Built by `workers.clients.build_activity_clients(settings)` (the only place real clients are constructed) or
by tests from real servers. Activities never construct clients themselves.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
from kubernetes.client import ApiClient
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from pitstop.config import RegionCluster, Settings
from pitstop.runbook.reach import AuthorReach

from pitstop.traffic_authority import TrafficAuthority

from .alertmanager_api import AlertmanagerApi
from .metrics import MetricsProvider, PrometheusProvider


@dataclass
class ActivityClients:
    settings: Settings
    kube: dict[str, ApiClient] = field(default_factory=dict)  # region -> client of that region's cluster
    http: httpx.AsyncClient | None = None
    metrics: MetricsProvider | None = None
    alertmanager: AlertmanagerApi | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    temporal: Client | None = None  # for activities that talk to Temporal itself (runbook leases)
    clusters: dict[str, RegionCluster] = field(default_factory=dict)  # region -> kubeconfig/context (chaos children)
    restore_targets: dict[str, ApiClient] = field(default_factory=dict)  # backup drill: name -> scratch cluster
    traffic_authority: TrafficAuthority | None = None  # the global traffic authority (GSLB), failover steps

    def restore_target(self, name: str) -> ApiClient:
        """The ApiClient of a configured restore target (`backup.restore_targets`); any other name is refused."""
        try:
            return self.restore_targets[name]
        except KeyError:
            known = ", ".join(sorted(self.restore_targets)) or "none (set backup.restore_targets)"
            raise ApplicationError(
                f"unknown restore target {name!r}: this worker restores only into [{known}]",
                type="UnknownRestoreTarget",
                non_retryable=True,
            ) from None

    def kube_client(self, region: str) -> ApiClient:
        """The ApiClient of `region`'s cluster; a region this worker has no cluster for is a domain error."""
        try:
            return self.kube[region]
        except KeyError:
            known = ", ".join(sorted(self.kube)) or "none"
            raise ApplicationError(
                f"unknown region {region!r}: this worker has clusters for [{known}]",
                type="UnknownRegion",
                non_retryable=True,
            ) from None

    def for_region(self, region: str) -> ActivityClients:
        """A copy limited to one region's cluster (what a regional worker's activities get)."""
        return ActivityClients(
            settings=self.settings,
            kube={region: self.kube_client(region)},
            http=self.http,
            metrics=self.metrics,
            alertmanager=self.alertmanager,
            environ=self.environ,
            temporal=self.temporal,
            clusters={k: v for k, v in self.clusters.items() if k == region},
            traffic_authority=self.traffic_authority,
        )

    @asynccontextmanager
    async def http_session(self, timeout_seconds: float) -> AsyncIterator[httpx.AsyncClient]:
        """The injected httpx client if there is one, else a fresh client closed afterwards."""
        if self.http is not None:
            yield self.http
            return
        async with httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=False) as client:
            yield client

    def metrics_provider(self) -> MetricsProvider:
        if self.metrics is None:
            self.metrics = PrometheusProvider(
                base_url=self.settings.prometheus.url,
                timeout_seconds=self.settings.prometheus.timeout_seconds,
            )
        return self.metrics

    def traffic_authority_client(self) -> TrafficAuthority:
        """The injected authority; none configured is a domain error naming the setting."""
        if self.traffic_authority is None:
            raise ApplicationError("no global traffic authority configured on this worker (settings.traffic.authority)",
                                   type="NoTrafficAuthority", non_retryable=True)
        return self.traffic_authority

    def alertmanager_api(self) -> AlertmanagerApi:
        if self.alertmanager is None:
            self.alertmanager = AlertmanagerApi(base_url=self.settings.alertmanager.url)
        return self.alertmanager

    def reach(self) -> AuthorReach:
        """What runbooks may reach through this worker (`security.*`, `worker.enable_debug_steps`)."""
        return AuthorReach.from_settings(self.settings)

    def secret(self, env_var: str, *, purpose: str) -> str:
        """Value of a secret referenced by env var name. A variable outside `security.env_allowlist` (validation
        refuses it too; checked again here) or a missing one is a domain error (never retried)."""
        refused = self.reach().env_problem(env_var)
        if refused:
            raise ApplicationError(f"{refused} ({purpose})", type="EnvNotAllowed", non_retryable=True)
        value = self.environ.get(env_var)
        if not value:
            raise ApplicationError(
                f"environment variable {env_var} ({purpose}) is not set on the worker",
                type="MissingSecret",
                non_retryable=True,
            )
        return value
