"""The local fleet sandbox as one unit: clusters, fleet, history, traffic simulator, Prometheus/Alertmanager.

`ensure_sandbox(settings)` brings everything up and is idempotent:
- clusters (`sandbox.clusters`) are created once and reused while they run (their processes are
  detached and outlive `pitstop up`); a cluster created before the sandbox listened on loopback only is
  reused with a warning that says how to recreate it;
- the fleet (`sandbox.fleet`) is applied only to a cluster that does not hold it yet, so pitstop's own
  changes (images, weights, replicas) are never reverted by a restart;
- history (`sandbox.history`) is backfilled once, into a TSDB that does not exist yet (a failed or interrupted
  backfill removes its partial TSDB, so the next start backfills again);
- the global traffic authority (`sandbox.gslb`, the GSLB outside every region whose weights the simulator obeys)
  listens on the port of `settings.traffic.authority.url`, state in `<state>/sandbox/gslb`;
- the authority, the simulator and Prometheus/Alertmanager are child processes of the caller (they stop with
  `pitstop up`, and when bringing the sandbox up fails or is interrupted); ones already answering on
  their ports are reused. The simulator keeps one port across
  restarts (recorded in `<state>/sandbox/simulator.json`) because Prometheus' scrape config names it.

Prometheus and Alertmanager listen on the ports of `settings.prometheus.url` / `settings.alertmanager.url`,
so the worker finds them where its configuration says.

    python -m pitstop.sandbox.lifecycle up|status|delete
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from kubernetes.client import ApiClient
from pydantic import BaseModel

from pitstop.config import Settings, load_settings
from pitstop.sandbox.binaries import ensure_binaries, locate_binaries
from pitstop.sandbox.clusters import (
    SandboxClusters,
    api_client,
    clusters_listening_beyond_loopback,
    create_sandbox_clusters,
    delete_sandbox_clusters,
    sandbox_cluster_status,
    sandbox_dir,
)
from pitstop.sandbox.fleet import FLEET_LABEL, SANDBOX_NAMESPACE, apply_fleet, expand_fleet, load_fleet_spec
from pitstop.sandbox.gslb import GslbProcess, start_gslb_process
from pitstop.sandbox.history import HistoricalPod, backfill_history
from pitstop.sandbox.kube_state_metrics import live_snapshot
from pitstop.sandbox.kube_objects import get_object, list_objects
from pitstop.sandbox.monitoring import AlertRuleSettings, MonitoringHandle, MonitoringSettings, free_loopback_port, start_monitoring
from pitstop.sandbox.simulator import SimulatorProcess, start_simulator_process
from pitstop.workers.clients import traffic_authority_token_file

Progress = Callable[[str], None]


class SandboxEndpoints(BaseModel):
    """Where the running sandbox answers."""

    clusters: SandboxClusters
    traffic_authority_url: str
    simulator_url: str
    prometheus_url: str
    alertmanager_url: str


@dataclass
class RunningSandbox:
    """The endpoints plus the child processes this call started (None = reused a running one)."""

    endpoints: SandboxEndpoints
    simulator: SimulatorProcess | None = None
    monitoring: MonitoringHandle | None = None
    traffic_authority: GslbProcess | None = None

    def stop_children(self) -> None:
        """Stop the authority, simulator and Prometheus/Alertmanager this process started (clusters keep running)."""
        if self.monitoring is not None:
            self.monitoring.stop()
        if self.simulator is not None:
            self.simulator.stop()
        if self.traffic_authority is not None:
            self.traffic_authority.stop()


def monitoring_dir(settings: Settings) -> Path:
    return sandbox_dir(settings.state_dir) / "monitoring"


def ensure_sandbox(
    settings: Settings,
    *,
    webhook_url: str | None = None,
    webhook_token: str | None = None,
    history_days: float = 14.0,
    progress: Progress = print,
    pitstop_targets: dict[str, list[str]] | None = None,
) -> RunningSandbox:
    """Bring the whole sandbox up (see the module docstring); returns what runs and what was started."""
    regions = settings.sandbox.regions
    binaries = ensure_binaries(progress=lambda line: progress(line))
    clusters = create_sandbox_clusters(regions=regions, state_dir=settings.state_dir, bin_dir=binaries.bin_dir)
    progress(f"[sandbox] clusters ready: {', '.join(regions)} (kubeconfig {clusters.kubeconfig})")
    for region, address in clusters_listening_beyond_loopback(regions=regions, state_dir=settings.state_dir).items():
        progress(
            f"[sandbox] WARNING: the {region} cluster was created before the sandbox listened on loopback only; "
            f"its kube-apiserver, etcd and controllers still listen on {address}, reachable from the network. "
            "Recreate it: `pitstop sandbox down`, then `pitstop up` (pitstop's changes in the sandbox are lost)."
        )

    services = expand_fleet(load_fleet_spec(), services=settings.sandbox.services)
    clients = {region: api_client(clusters=clusters, region=region) for region in regions}
    try:
        for region, client in clients.items():
            if get_object(client, kind="Namespace", name=SANDBOX_NAMESPACE, namespace=None) is None:
                result = apply_fleet(api_client=client, region=region, services=services)
                progress(f"[sandbox] fleet applied to {region}: {result.services} services in {result.seconds}s")
            else:
                progress(f"[sandbox] fleet already in {region}; left as it is")
        tsdb_dir = monitoring_dir(settings) / "prometheus-data"
        if not tsdb_dir.exists():
            try:
                history = backfill_history(
                    services=services,
                    regions=regions,
                    tsdb_dir=tsdb_dir,
                    work_dir=monitoring_dir(settings),
                    pods_by_region={
                        region: wait_for_fleet_pods(client, expected=sum(s.replicas for s in services), progress=progress)
                        for region, client in clients.items()
                    },
                    kube_state_by_region={region: live_snapshot(client, region=region) for region, client in clients.items()},
                    days=history_days,
                )
            except BaseException:  # a partial TSDB would make the next `pitstop up` skip the backfill for good
                shutil.rmtree(tsdb_dir, ignore_errors=True)
                raise
            progress(f"[sandbox] {history_days:g} days of history backfilled: {history.summary()}")
    finally:
        for client in clients.values():
            client.close()

    authority = _ensure_traffic_authority(settings=settings, progress=progress)
    try:
        simulator, simulator_url = _ensure_simulator(settings=settings, clusters=clusters, progress=progress)
    except BaseException:
        if authority is not None:
            authority.stop()
        raise
    try:
        monitoring = _ensure_monitoring(
            settings=settings,
            simulator_target=urlsplit(simulator_url).netloc,
            webhook_url=webhook_url,
            webhook_token=webhook_token,
            progress=progress,
            pitstop_targets=pitstop_targets or {},
        )
    except BaseException:  # also Ctrl-C/SIGTERM: never leave a simulator this call started behind
        if simulator is not None:
            simulator.stop()
        if authority is not None:
            authority.stop()
        raise
    return RunningSandbox(
        endpoints=SandboxEndpoints(
            clusters=clusters,
            traffic_authority_url=settings.traffic.authority.url,
            simulator_url=simulator_url,
            prometheus_url=settings.prometheus.url,
            alertmanager_url=settings.alertmanager.url,
        ),
        simulator=simulator,
        monitoring=monitoring,
        traffic_authority=authority,
    )


def delete_sandbox(settings: Settings) -> None:
    """Delete every region's cluster and the sandbox's monitoring data (the caller stops its children)."""
    delete_sandbox_clusters(
        regions=settings.sandbox.regions, state_dir=settings.state_dir, bin_dir=locate_binaries().bin_dir
    )
    _simulator_state_file(settings).unlink(missing_ok=True)
    shutil.rmtree(monitoring_dir(settings), ignore_errors=True)  # its history describes the deleted fleet


def _fleet_pods(client: ApiClient) -> list[HistoricalPod]:
    items, _ = list_objects(client, kind="Pod", label_selector=f"{FLEET_LABEL}=true,pitstop.dev/role=stable")
    return [
        HistoricalPod(
            namespace=pod["metadata"]["namespace"],
            pod=pod["metadata"]["name"],
            container=pod["spec"]["containers"][0]["name"],
            app=pod["metadata"]["labels"]["app"],
        )
        for pod in items
    ]


def wait_for_fleet_pods(
    client: ApiClient, *, expected: int, progress: Progress, timeout: float = 300
) -> list[HistoricalPod]:
    """The fleet's stable pods once `expected` of them exist, so history carries the live pod names."""
    deadline = time.monotonic() + timeout
    pods = _fleet_pods(client)
    while len(pods) < expected and time.monotonic() < deadline:
        time.sleep(1)
        pods = _fleet_pods(client)
    if len(pods) < expected:
        progress(f"[sandbox] only {len(pods)} of {expected} fleet pods after {timeout:.0f}s; history uses those")
    return pods


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _simulator_state_file(settings: Settings) -> Path:
    return sandbox_dir(settings.state_dir) / "simulator.json"


def _ensure_simulator(
    *, settings: Settings, clusters: SandboxClusters, progress: Progress
) -> tuple[SimulatorProcess | None, str]:
    state_file = _simulator_state_file(settings)
    port = json.loads(state_file.read_text())["port"] if state_file.exists() else None
    if port is not None and _answers(f"http://127.0.0.1:{port}/healthz"):
        progress(f"[sandbox] simulator already serving on 127.0.0.1:{port}")
        return None, f"http://127.0.0.1:{port}"
    simulator = start_simulator_process(
        kubeconfig=clusters.kubeconfig,
        contexts=list(clusters.contexts.values()),
        log_path=sandbox_dir(settings.state_dir) / "logs" / "simulator.log",
        port=port or free_loopback_port(),
        traffic_authority=(settings.traffic.authority.url, traffic_authority_token_file(settings)),
    )
    state_file.write_text(json.dumps({"port": simulator.port}))
    progress(f"[sandbox] simulator serving on {simulator.url}")
    return simulator, simulator.url


def traffic_authority_dir(settings: Settings) -> Path:
    return sandbox_dir(settings.state_dir) / "gslb"


def _ensure_traffic_authority(*, settings: Settings, progress: Progress) -> GslbProcess | None:
    url = settings.traffic.authority.url
    if _answers(f"{url}/healthz"):
        progress(f"[sandbox] global traffic authority already serving on {url}")
        return None
    authority = start_gslb_process(state_dir=traffic_authority_dir(settings), regions=settings.sandbox.regions,
                                   token_file=traffic_authority_token_file(settings),
                                   port=_port_of(url), log_path=sandbox_dir(settings.state_dir) / "logs" / "gslb.log")
    progress(f"[sandbox] global traffic authority (GSLB) serving on {authority.url}")
    return authority


def _port_of(url: str) -> int:
    port = urlsplit(url).port
    if port is None:
        raise ValueError(f"{url}: the sandbox needs an explicit port in this URL")
    return port


def _ensure_monitoring(
    *,
    settings: Settings,
    simulator_target: str,
    webhook_url: str | None,
    webhook_token: str | None,
    progress: Progress,
    pitstop_targets: dict[str, list[str]] | None = None,
) -> MonitoringHandle | None:
    prometheus_url, alertmanager_url = settings.prometheus.url, settings.alertmanager.url
    if _answers(f"{prometheus_url}/-/ready") and _answers(f"{alertmanager_url}/-/ready"):
        progress(f"[sandbox] Prometheus ({prometheus_url}) and Alertmanager ({alertmanager_url}) already running")
        return None
    handle = start_monitoring(
        settings=MonitoringSettings(
            simulator_target=simulator_target,
            regions=settings.sandbox.regions,
            webhook_url=webhook_url,
            webhook_bearer_token=webhook_token,
            rules=SANDBOX_ALERT_RULES,
            pitstop_targets=pitstop_targets or {},  # pitstop's own worker and webhook (docs/observability.md)
        ),
        state_dir=monitoring_dir(settings),
        prometheus_port=_port_of(prometheus_url),
        alertmanager_port=_port_of(alertmanager_url),
    )
    progress(f"[sandbox] Prometheus {handle.prometheus_url}, Alertmanager {handle.alertmanager_url}")
    return handle


# The local sandbox's alert rules: 1-minute windows and pending periods, so an incident in the demo fires,
# is remediated and resolves within minutes (with the 5m/10m defaults, a fixed crash loop keeps its alert for
# 5 more minutes: `max_over_time(...[5m])` still sees the deleted pods). Real fleets bring their own rules.
SANDBOX_ALERT_RULES = AlertRuleSettings(window="1m", restart_window="3m", for_duration="1m")


def main(argv: list[str] | None = None) -> int:
    """`up` runs until Ctrl-C (then stops the simulator and monitoring; clusters keep running)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pitstop.sandbox.lifecycle", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "status", "delete"])
    args = parser.parse_args(argv)
    settings = load_settings()
    if args.command == "status":
        for status in sandbox_cluster_status(regions=settings.sandbox.regions, state_dir=settings.state_dir):
            print(status.model_dump_json())
        return 0
    if args.command == "delete":
        delete_sandbox(settings)
        return 0
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the children on SIGTERM too
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    running = ensure_sandbox(settings, progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(running.endpoints.model_dump_json(indent=2), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        running.stop_children()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
