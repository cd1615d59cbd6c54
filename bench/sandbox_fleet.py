"""Benchmark: bring up the sandbox at fleet scale and print what it costs.

2 regions x 500 services (defaults): real kwok clusters (sandbox.clusters), the fleet (sandbox.fleet),
14 days of backfilled history (sandbox.history), the traffic simulator and Prometheus + Alertmanager
(sandbox.monitoring). Prints time to ready per phase, pod counts, RSS per component and total memory.

    .venv/bin/python bench/sandbox_fleet.py [--services 500] [--regions eu-central,us-east] [--keep]

At 500 services a region needs more than the default 8 kwok nodes and the default team quotas, so the
benchmark adds kwok nodes (m6i.2xlarge-like, 8 CPU) and raises the team quotas before applying the fleet.
Every Service is a real ClusterIP Service (the clusters' service range is a /16). Without --keep, the
benchmark stops everything it started (clusters, simulator, Prometheus, Alertmanager), also on errors,
Ctrl-C and SIGTERM.

Measured 2026-11-25 on the shared 2-core machine (load 7-17 from other work), 2 regions x 500 services,
all 500 Services with a ClusterIP in each region: clusters ready 22 s, fleet applied 226 s (2008
objects/region), 969 pods Running per region at 252 s, 14 days of history backfilled at 350 s, simulator
synced 361 s, Prometheus sees the whole fleet at 381 s. RSS per region: kube-apiserver 596-626 MiB,
kube-controller-manager 172-184, etcd 115, kube-scheduler 105, kwok-controller 83; simulator 173,
Prometheus 447 (60.7k head series), Alertmanager 32; total 2835 MiB.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from pitstop.sandbox.binaries import ensure_binaries  # noqa: E402
from pitstop.sandbox.cluster_contents import TEAM_NAMESPACES, node_manifests  # noqa: E402
from pitstop.sandbox.clusters import api_client, create_sandbox_clusters, delete_sandbox_clusters  # noqa: E402
from pitstop.sandbox.fleet import FLEET_LABEL, FleetApplyResult, apply_fleet, expand_fleet, load_fleet_spec  # noqa: E402
from pitstop.sandbox.history import HistoricalPod, backfill_history  # noqa: E402
from pitstop.sandbox.kube_objects import list_objects, server_side_apply  # noqa: E402
from pitstop.sandbox.monitoring import MonitoringSettings, start_monitoring  # noqa: E402
from pitstop.sandbox.simulator import start_simulator_process  # noqa: E402


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def processes_mentioning(text: str) -> dict[int, str]:
    """pid -> program name for every process whose command line mentions `text`."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
        if any(text.encode() in part for part in cmdline):
            found[int(proc.name)] = Path(cmdline[0].decode(errors="replace")).name
    return found


def stop_leftover_processes(cluster_prefix: str) -> None:
    """SIGTERM, then SIGKILL, whatever this benchmark's clusters left running."""
    import os
    import signal

    pids = list(processes_mentioning(cluster_prefix))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.5)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def scale_cluster_capacity(*, client: object, region: str, extra_nodes: int, pods_per_team: int) -> None:
    template = next(n for n in node_manifests(region=region) if "m6i-2xlarge" in n["metadata"]["name"])
    for index in range(extra_nodes):
        node = copy.deepcopy(template)
        name = f"{region}-m6i-2xlarge-scale-{index}"
        node["metadata"]["name"] = name
        node["metadata"]["labels"]["kubernetes.io/hostname"] = name
        server_side_apply(client, node)  # type: ignore[arg-type]
    for namespace in TEAM_NAMESPACES:
        server_side_apply(client, {  # type: ignore[arg-type]
            "apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": "team-quota", "namespace": namespace},
            "spec": {"hard": {"requests.cpu": "400", "requests.memory": "1Ti", "limits.cpu": "800",
                              "limits.memory": "2Ti", "pods": str(pods_per_team)}},
        })


def wait_available(*, client: object, deployments: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        items, _ = list_objects(client, kind="Deployment", label_selector=f"{FLEET_LABEL}=true")  # type: ignore[arg-type]
        ready = sum(1 for d in items if (d.get("status") or {}).get("availableReplicas", 0) >= d["spec"]["replicas"])
        if len(items) >= deployments and ready == len(items):
            pods, _ = list_objects(client, kind="Pod", label_selector=f"{FLEET_LABEL}=true")  # type: ignore[arg-type]
            return sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Running")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{ready}/{len(items)} deployments available after {timeout}s")
        time.sleep(2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=500)
    parser.add_argument("--regions", default="eu-central,us-east")
    parser.add_argument("--history-days", type=float, default=14)
    parser.add_argument("--history-step-seconds", type=int, default=1800)
    parser.add_argument("--keep", action="store_true", help="leave everything running (prints where)")
    args = parser.parse_args()
    regions = args.regions.split(",")
    figures: dict[str, object] = {"services": args.services, "regions": regions}
    state_dir = Path(tempfile.mkdtemp(prefix="pitstop-bench-"))
    prefix = f"pitstop-bench-{uuid.uuid4().hex[:6]}"
    t0 = time.monotonic()

    def mark(name: str) -> None:
        figures[f"t_{name}_s"] = round(time.monotonic() - t0, 1)
        print(f"[{figures[f't_{name}_s']:>7}s] {name}", flush=True)

    binaries = ensure_binaries(progress=lambda line: None)
    mark("binaries")
    # SIGTERM (e.g. a CI timeout) unwinds like Ctrl-C, so the finally below stops everything this started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    simulator = monitoring = None
    clients: dict[str, Any] = {}
    try:
        clusters = create_sandbox_clusters(regions=regions, state_dir=state_dir, bin_dir=binaries.bin_dir,
                                           cluster_prefix=prefix)
        mark("clusters_ready")
        services = expand_fleet(load_fleet_spec(), services=args.services)
        deployments = len(services) + sum(1 for s in services if s.canary_version)
        replicas = sum(s.replicas for s in services) + sum(1 for s in services if s.canary_version)
        cpu_cores = sum(s.replicas * s.cpu_request_millicores for s in services) / 1000
        clients = {r: api_client(clusters=clusters, region=r) for r in regions}
        for client in clients.values():
            client.rest_client.pool_manager.connection_pool_kw["maxsize"] = 16
        extra_nodes = max(0, int(cpu_cores * 1.3 / 8) - 4, int(replicas / 100))
        for region, client in clients.items():
            scale_cluster_capacity(client=client, region=region, extra_nodes=extra_nodes,
                                   pods_per_team=replicas)
        figures["extra_nodes_per_region"] = extra_nodes
        mark("capacity_scaled")
        results: dict[str, FleetApplyResult] = {}
        threads = [threading.Thread(target=lambda r=r: results.__setitem__(
            r, apply_fleet(api_client=clients[r], region=r, services=services))) for r in regions]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if len(results) != len(regions):
            raise RuntimeError("applying the fleet failed (see the thread tracebacks above)")
        figures["apply_seconds"] = {r: res.seconds for r, res in results.items()}
        figures["objects_per_region"] = next(iter(results.values())).objects
        mark("fleet_applied")
        pods = {r: wait_available(client=c, deployments=deployments, timeout=1800) for r, c in clients.items()}
        figures["running_pods"] = pods
        figures["cluster_ip_services"] = {
            r: sum(1 for svc in list_objects(c, kind="Service", label_selector=f"{FLEET_LABEL}=true")[0]
                   if svc["spec"].get("clusterIP") not in (None, "", "None"))
            for r, c in clients.items()}
        mark("fleet_available")
        live = {}
        for region, client in clients.items():
            items, _ = list_objects(client, kind="Pod", label_selector=f"{FLEET_LABEL}=true,pitstop.dev/role=stable")
            live[region] = [HistoricalPod(namespace=p["metadata"]["namespace"], pod=p["metadata"]["name"],
                                          container=p["spec"]["containers"][0]["name"],
                                          app=p["metadata"]["labels"]["app"]) for p in items]
        history = backfill_history(services=services, regions=regions, tsdb_dir=state_dir / "prometheus-data",
                                   work_dir=state_dir, pods_by_region=live, days=args.history_days,
                                   step_seconds=args.history_step_seconds)
        figures["history"] = history.model_dump()
        mark("history_backfilled")
        simulator = start_simulator_process(kubeconfig=clusters.kubeconfig, contexts=regions,
                                            log_path=state_dir / "simulator.log", tick_seconds=2.0,
                                            ready_timeout_seconds=600)
        mark("simulator_synced")
        monitoring = start_monitoring(
            settings=MonitoringSettings(simulator_target=simulator.target, regions=regions,
                                        scrape_interval="15s", evaluation_interval="15s"),
            state_dir=state_dir)
        mark("monitoring_started")
        deadline = time.monotonic() + 300
        while True:
            r = httpx.get(f"{monitoring.prometheus_url}/api/v1/query", timeout=30, params={
                "query": "count by (region) (kube_deployment_status_replicas_available)"}).json()
            counts = {x["metric"]["region"]: int(x["value"][1]) for x in r["data"]["result"]}
            if all(counts.get(region, 0) >= deployments for region in regions):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"Prometheus sees {counts}")
            time.sleep(1)
        mark("prometheus_has_fleet")
        time.sleep(35)  # a couple of scrapes at steady state before measuring memory
        scrape = httpx.get(f"{monitoring.prometheus_url}/api/v1/query", timeout=30, params={
            "query": "scrape_duration_seconds"}).json()
        figures["scrape_duration_seconds"] = {x["metric"]["job"]: round(float(x["value"][1]), 3)
                                              for x in scrape["data"]["result"]}
        tsdb = httpx.get(f"{monitoring.prometheus_url}/api/v1/status/tsdb", timeout=30).json()
        figures["prometheus_head_series"] = tsdb["data"]["headStats"]["numSeries"]
        sim_metrics = httpx.get(f"{simulator.url}/metrics", timeout=60).text
        figures["simulator_metrics_bytes"] = len(sim_metrics)
        figures["simulator_tick_seconds"] = float(next(
            line.split()[-1] for line in sim_metrics.splitlines()
            if line.startswith("pitstop_sandbox_tick_duration_seconds")))
        rss: dict[str, float] = {}
        for region in regions:
            for pid, name in processes_mentioning(clusters.cluster_names[region]).items():
                if name in ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok-controller"):
                    rss[f"{region}/{name}"] = round(rss.get(f"{region}/{name}", 0) + rss_mib(pid), 1)
        rss["simulator"] = round(rss_mib(simulator.pid), 1)
        rss["prometheus"] = round(rss_mib(monitoring.prometheus_pid), 1)
        rss["alertmanager"] = round(rss_mib(monitoring.alertmanager_pid), 1)
        figures["rss_mib"] = rss
        figures["total_rss_mib"] = round(sum(rss.values()), 1)
        print(json.dumps(figures, indent=2))
        if args.keep:
            print(f"kept: kubeconfig {clusters.kubeconfig}, prometheus {monitoring.prometheus_url}, "
                  f"simulator {simulator.url}")
            return
    finally:
        for client in clients.values():
            client.close()
        if not args.keep:
            if monitoring is not None:
                monitoring.stop()
            if simulator is not None:
                simulator.stop()
            try:
                delete_sandbox_clusters(regions=regions, state_dir=state_dir, bin_dir=binaries.bin_dir,
                                        cluster_prefix=prefix)
            finally:
                stop_leftover_processes(prefix)
                shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
