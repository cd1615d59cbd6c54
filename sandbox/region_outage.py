"""A hard region outage for the sandbox: the region's kube-apiserver stopped AND its traffic answering 503.

`fail_region` first injects the `region-outage` fault (`sandbox.faults`: the simulator answers every request in
the region with 503 and its edge probe fails), waits until the simulator shows it (when given its URL), then
stops the region's kube-apiserver (`sandbox.control_plane`): pitstop can no longer reach that cluster, while the
simulator keeps its last view of it, fault included — what users of a dead region see. `restore_region` starts
the API server again (with the controllers and kwok healed by `sandbox.control_plane`) and clears the fault.
Global traffic weights are not touched: they live in the global traffic authority (`sandbox.gslb`), which is
what a failover changes.

    python -m pitstop.sandbox.region_outage fail|restore REGION [--simulator-url URL]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import httpx
from kubernetes.client import ApiClient

from pitstop.sandbox.clusters import SandboxClusters
from pitstop.sandbox.control_plane import KwokCluster, start_kube_apiserver, stop_kube_apiserver
from pitstop.sandbox.faults import RegionOutage, clear_fault, inject_fault, list_faults

SIMULATOR_WAIT_SECONDS = 15.0


def simulator_sees_outage(simulator_url: str, region: str) -> bool:
    """Whether the simulator's edge probe for `region` reports it down."""
    text = httpx.get(f"{simulator_url.rstrip('/')}/metrics", params={"region": region}, timeout=5).text
    return any(line.startswith("probe_success{") and f'region="{region}"' in line and line.endswith(" 0")
               for line in text.splitlines())


def fail_region(*, clusters: SandboxClusters, region: str, api_client: ApiClient,
                simulator_url: str | None = None) -> None:
    """Hard outage of `region` (see the module docstring)."""
    if not any(isinstance(r.fault, RegionOutage) for r in list_faults(api_client=api_client)):
        inject_fault(api_client=api_client, fault=RegionOutage())
    if simulator_url:
        deadline = time.monotonic() + SIMULATOR_WAIT_SECONDS
        while not simulator_sees_outage(simulator_url, region):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the simulator at {simulator_url} did not show {region}'s outage within "
                                   f"{SIMULATOR_WAIT_SECONDS:g}s")
            time.sleep(0.2)
    else:
        time.sleep(2.0)  # the simulator's watch delivers the fault well within this
    stop_kube_apiserver(KwokCluster.of(clusters, region))


def restore_region(*, clusters: SandboxClusters, region: str, api_client: ApiClient) -> float:
    """End `region`'s outage: API server (and controllers) back, then the fault cleared. Returns the seconds
    until the API server was ready."""
    ready_after = start_kube_apiserver(KwokCluster.of(clusters, region))
    for record in list_faults(api_client=api_client):
        if isinstance(record.fault, RegionOutage):
            clear_fault(api_client=api_client, fault_id=record.id)
    return ready_after


def main(argv: Sequence[str] | None = None) -> int:
    from pitstop.config import load_settings
    from pitstop.sandbox.clusters import DEFAULT_CLUSTER_PREFIX, cluster_name, kubeconfig_path, kwok_workdir
    from pitstop.sandbox.clusters import api_client as region_api_client

    parser = argparse.ArgumentParser(prog="python -m pitstop.sandbox.region_outage",
                                     description="fail a sandbox region hard (API server down, traffic 503), or restore it")
    parser.add_argument("command", choices=["fail", "restore"])
    parser.add_argument("region")
    parser.add_argument("--simulator-url", help="wait until this simulator shows the outage before stopping the API server")
    args = parser.parse_args(argv)
    settings = load_settings()
    if args.region not in settings.sandbox.regions:
        parser.error(f"{args.region!r} is not a sandbox region ({', '.join(settings.sandbox.regions)})")
    regions = settings.sandbox.regions
    clusters = SandboxClusters(
        kubeconfig=kubeconfig_path(settings.state_dir), contexts={r: r for r in regions}, apiserver_urls={},
        cluster_names={r: cluster_name(prefix=DEFAULT_CLUSTER_PREFIX, region=r) for r in regions},
        kwok_workdir=kwok_workdir(settings.state_dir))
    client = region_api_client(clusters=clusters, region=args.region)
    try:
        if args.command == "fail":
            fail_region(clusters=clusters, region=args.region, api_client=client, simulator_url=args.simulator_url)
            print(f"{args.region}: kube-apiserver stopped, traffic answering 503")
        else:
            print(f"{args.region}: restored (API server ready after "
                  f"{restore_region(clusters=clusters, region=args.region, api_client=client):.1f}s)")
    except Exception as exc:  # noqa: BLE001 - a CLI: say what failed
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
