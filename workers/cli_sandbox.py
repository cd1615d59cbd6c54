"""`pitstop sandbox up|down|status|fault|scratch-cluster`: the local fleet sandbox from the command line.

The sandbox is one real kube-apiserver (+ etcd, controller-manager, scheduler, kwok) per region, a fleet
of automotive services with Istio routing, a traffic simulator, Prometheus and Alertmanager.
"""

from __future__ import annotations

import json
import signal
import time
from typing import Annotated, Optional

import typer

from pitstop.config import Settings

from .errors import EXIT_USAGE, CliError

sandbox_app = typer.Typer(help="The local fleet sandbox (real Kubernetes API per region, simulated nodes).",
                          no_args_is_help=True)
fault_app = typer.Typer(help="Inject, clear and list live faults in a sandbox region.", no_args_is_help=True)
sandbox_app.add_typer(fault_app, name="fault")
scratch_app = typer.Typer(help="A scratch cluster for restore drills (`backup-drill` restores into it as target `scratch`).",
                          no_args_is_help=True)
sandbox_app.add_typer(scratch_app, name="scratch-cluster")


def _settings(regions: Optional[str], services: Optional[int]) -> Settings:
    from .cli_settings import load_settings

    settings = load_settings()
    if regions:
        names = [r.strip() for r in regions.split(",") if r.strip()]
        if not names:
            raise CliError("--regions needs at least one region name", exit_code=EXIT_USAGE)
        settings.sandbox.regions = names
    if services is not None:
        if not 1 <= services <= 5000:
            raise CliError("--services must be between 1 and 5000", exit_code=EXIT_USAGE)
        settings.sandbox.services = services
    return settings


RegionsOption = Annotated[Optional[str], typer.Option("--regions", help="Comma-separated region names (default: eu-central,us-east).")]
ServicesOption = Annotated[Optional[int], typer.Option("--services", help="Number of services in the fleet (default 40).")]


@sandbox_app.command("up")
def sandbox_up(regions: RegionsOption = None, services: ServicesOption = None) -> None:
    """Build the binaries if needed, start clusters, apply the fleet, backfill history, run the simulator,
    Prometheus and Alertmanager until Ctrl-C (clusters keep running; `pitstop sandbox down` deletes them)."""
    from pitstop.sandbox.lifecycle import ensure_sandbox

    from .webhook import webhook_token

    settings = _settings(regions, services)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    running = ensure_sandbox(
        settings, webhook_url=f"http://{settings.webhook.listen}/alerts", webhook_token=webhook_token(settings)
    )
    endpoints = running.endpoints
    print(f"[sandbox] kubeconfig {endpoints.clusters.kubeconfig} (contexts: {', '.join(endpoints.clusters.contexts)})")
    print(f"[sandbox] Prometheus {endpoints.prometheus_url}  Alertmanager {endpoints.alertmanager_url}")
    print("[sandbox] running — Ctrl-C stops the simulator and monitoring", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        running.stop_children()


@sandbox_app.command("down")
def sandbox_down(regions: RegionsOption = None) -> None:
    """Delete the sandbox's clusters and monitoring data."""
    from pitstop.sandbox.lifecycle import delete_sandbox

    delete_sandbox(_settings(regions, None))
    print("[sandbox] deleted")


@sandbox_app.command("status")
def sandbox_status(
    regions: RegionsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show each region's cluster: API server, nodes ready."""
    from pitstop.sandbox.clusters import sandbox_cluster_status

    settings = _settings(regions, None)
    statuses = sandbox_cluster_status(regions=settings.sandbox.regions, state_dir=settings.state_dir)
    if as_json:
        print(json.dumps([s.model_dump(mode="json") for s in statuses], indent=2))
        return
    for s in statuses:
        state = "ready" if s.apiserver_ready else ("stopped" if s.exists else "absent")
        line = f"{s.region:<14} {state:<8} nodes {s.nodes_ready}/{s.nodes_total}  {s.apiserver_url or ''}"
        print(line + (f"  ({s.error})" if s.error else ""))


@scratch_app.command("create")
def scratch_create() -> None:
    """Create (or start again) the scratch cluster and print its kubeconfig; the worker then offers it as restore
    target `scratch` (restart a running worker to pick it up)."""
    from pitstop.sandbox.binaries import ensure_binaries
    from pitstop.sandbox.scratch_cluster import create_scratch_cluster, scratch_kubeconfig

    settings = _settings(None, None)
    print("[sandbox] creating the scratch cluster (about a minute the first time)", flush=True)
    create_scratch_cluster(state_dir=settings.state_dir, bin_dir=ensure_binaries().bin_dir)
    print(f"[sandbox] scratch cluster ready: kubeconfig {scratch_kubeconfig(settings.state_dir)} (context scratch)")


@scratch_app.command("delete")
def scratch_delete() -> None:
    """Delete the scratch cluster (processes and data)."""
    from pitstop.sandbox.binaries import locate_binaries
    from pitstop.sandbox.scratch_cluster import delete_scratch_cluster

    delete_scratch_cluster(state_dir=_settings(None, None).state_dir, bin_dir=locate_binaries().bin_dir)
    print("[sandbox] scratch cluster deleted")


def _fault_client(region: str) -> object:
    from kubernetes.config import new_client_from_config

    from pitstop.sandbox.clusters import kubeconfig_path

    settings = _settings(None, None)
    kubeconfig = kubeconfig_path(settings.state_dir)
    if not kubeconfig.exists():
        raise CliError(f"no sandbox kubeconfig at {kubeconfig}: run `pitstop sandbox up` first", exit_code=EXIT_USAGE)
    return new_client_from_config(config_file=str(kubeconfig), context=region)


@fault_app.command("inject")
def fault_inject(
    kind: Annotated[str, typer.Argument(help="bad-release | region-outage | saturated-service | crash-loop | node-not-ready")],
    region: Annotated[str, typer.Option(help="Region whose cluster gets the fault.")] = "eu-central",
    service: Annotated[Optional[str], typer.Option(help="Affected service (all kinds but region-outage).")] = None,
    version: Annotated[Optional[str], typer.Option(help="Only this version (bad-release, crash-loop).")] = None,
    error_ratio: Annotated[float, typer.Option(help="bad-release: share of failing requests.")] = 0.3,
    node: Annotated[Optional[str], typer.Option(help="node-not-ready: the node to fail.")] = None,
) -> None:
    """Inject a live fault; the simulator (and so Prometheus and Alertmanager) sees it within seconds."""
    from pydantic import TypeAdapter, ValidationError

    from pitstop.sandbox.faults import Fault, inject_fault

    fields: dict[str, str | float | None] = {"kind": kind, "service": service, "version": version, "node": node}
    if kind == "bad-release":
        fields["error_ratio"] = error_ratio
    try:
        fault = TypeAdapter(Fault).validate_python({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CliError(f"invalid fault: {'.'.join(map(str, first['loc']))}: {first['msg']}", exit_code=EXIT_USAGE) from exc
    record = inject_fault(api_client=_fault_client(region), fault=fault)  # type: ignore[arg-type]
    print(record.model_dump_json())


@fault_app.command("clear")
def fault_clear(
    fault_id: Annotated[str, typer.Argument(help="Id printed by `fault inject` / `fault list`.")],
    region: Annotated[str, typer.Option(help="Region of the fault.")] = "eu-central",
) -> None:
    """Clear one fault."""
    from pitstop.sandbox.faults import clear_fault

    if not clear_fault(api_client=_fault_client(region), fault_id=fault_id):  # type: ignore[arg-type]
        raise CliError(f"no active fault {fault_id!r} in {region}", exit_code=4)
    print(f"cleared {fault_id}")


@fault_app.command("list")
def fault_list(region: Annotated[str, typer.Option(help="Region to list.")] = "eu-central") -> None:
    """List active faults in a region."""
    from pitstop.sandbox.faults import list_faults

    for record in list_faults(api_client=_fault_client(region)):  # type: ignore[arg-type]
        print(record.model_dump_json())


def register(app: typer.Typer) -> None:
    app.add_typer(sandbox_app, name="sandbox")
