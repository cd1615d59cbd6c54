"""One real Kubernetes control plane per sandbox region, run by kwokctl from locally built binaries.

Each region is a kwok cluster `<prefix>-<region>` (kube-apiserver, etcd, kube-controller-manager,
kube-scheduler and the kwok controller as local processes; nodes and pod status simulated by kwok).
kwokctl's working directory is `<state_dir>/sandbox/kwok` (KWOK_WORKDIR); one kubeconfig,
`<state_dir>/sandbox/kubeconfig`, holds a context named exactly after each region.

Every cluster is then populated by `sandbox.cluster_contents`: kwok nodes of a few instance types,
team namespaces with quotas, and the Istio networking CRDs.

Clusters are created with
- a /16 service IP range (`SERVICE_CLUSTER_IP_RANGE`; kube-apiserver's default /24 is full at ~250
  Services, below the 500-service fleet);
- an audit log of write verbs (`sandbox.audit`), in `<kwok workdir>/clusters/<name>/logs/audit.log`;
- kwok's default Stages plus pitstop's fault Stages (`sandbox/kwok/*.yaml`): pods labelled
  `pitstop.dev/fault=crash-loop` crash-loop (CrashLoopBackOff, growing restartCount), nodes labelled
  `pitstop.dev/fault=node-not-ready` turn NotReady;
- every process listening on 127.0.0.1 only (`sandbox/kwok/kwokctl.yaml`: kwokctl's `bindAddress`; etcd
  serves plain HTTP on loopback).

A cluster created before these options keeps its old settings (kwokctl saves each component's arguments)
until it is deleted and created again; `clusters_listening_beyond_loopback` names such clusters.

    python -m pitstop.sandbox.clusters create|delete|status [--regions eu-central,us-east]
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from pydantic import BaseModel

from pitstop.sandbox.audit import AUDIT_LOG_MAX_BACKUPS, AUDIT_LOG_MAX_MB, write_audit_policy
from pitstop.sandbox.binaries import KubeBinaries
from pitstop.sandbox.cluster_contents import node_is_ready, populate_cluster

DEFAULT_CLUSTER_PREFIX = "pitstop"
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
KWOK_CONFIG_FILES = (
    Path(__file__).resolve().parent / "kwok" / "kwokctl.yaml",
    Path(__file__).resolve().parent / "kwok" / "default-stages.yaml",
    Path(__file__).resolve().parent / "kwok" / "stages.yaml",
)
LOOPBACK_ADDRESSES = frozenset({"127.0.0.1", "::1", "localhost"})
KWOKCTL_DEFAULT_BIND_ADDRESS = "0.0.0.0"
CREATE_TIMEOUT_SECONDS = 300
# kwokctl picks free ports by probing; two kwokctl runs at once (regions, or test sessions on one
# machine) could pick the same ones before either binds them. One machine-wide lock serialises creation.
_PORT_PICKING_LOCK = Path(tempfile.gettempdir()) / "pitstop-kwokctl-create.lock"


class SandboxClusters(BaseModel):
    """Where the sandbox's clusters are: one kubeconfig with one context per region."""

    kubeconfig: Path
    contexts: dict[str, str]
    """region -> kubeconfig context (the region's own name)"""
    apiserver_urls: dict[str, str]
    """region -> https URL of its kube-apiserver"""
    cluster_names: dict[str, str]
    """region -> kwok cluster name"""
    kwok_workdir: Path


class SandboxClusterStatus(BaseModel):
    """Liveness of one region's cluster."""

    region: str
    cluster_name: str
    exists: bool
    apiserver_url: str | None = None
    apiserver_ready: bool = False
    nodes_total: int = 0
    nodes_ready: int = 0
    error: str | None = None


class SandboxClusterError(RuntimeError):
    """A kwokctl command or a cluster check failed; the message says which cluster and why."""


def sandbox_dir(state_dir: Path) -> Path:
    return state_dir / "sandbox"


def kwok_workdir(state_dir: Path) -> Path:
    return sandbox_dir(state_dir) / "kwok"


def kubeconfig_path(state_dir: Path) -> Path:
    return sandbox_dir(state_dir) / "kubeconfig"


def cluster_name(*, prefix: str, region: str) -> str:
    return f"{prefix}-{region}"


def create_sandbox_clusters(
    *,
    regions: list[str],
    state_dir: Path,
    bin_dir: Path,
    cluster_prefix: str = DEFAULT_CLUSTER_PREFIX,
) -> SandboxClusters:
    """Create (or restart) one cluster per region, write the kubeconfig, populate every cluster.

    Idempotent: a region whose cluster already runs is reused; a stopped one is started again.
    """
    binaries = KubeBinaries(bin_dir=bin_dir)
    workdir = kwok_workdir(state_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    names = {region: cluster_name(prefix=cluster_prefix, region=region) for region in regions}
    for region, name in names.items():
        _ensure_cluster_running(binaries=binaries, workdir=workdir, name=name, region=region)
    urls = _write_kubeconfig(workdir=workdir, names=names, target=kubeconfig_path(state_dir))
    clusters = SandboxClusters(
        kubeconfig=kubeconfig_path(state_dir),
        contexts={region: region for region in regions},
        apiserver_urls=urls,
        cluster_names=names,
        kwok_workdir=workdir,
    )
    for region in regions:
        api = api_client(clusters=clusters, region=region)
        try:
            populate_cluster(api=api, region=region)
        finally:
            api.close()
    return clusters


def delete_sandbox_clusters(
    *,
    regions: list[str],
    state_dir: Path,
    bin_dir: Path,
    cluster_prefix: str = DEFAULT_CLUSTER_PREFIX,
) -> None:
    """Stop and delete every region's cluster (processes, etcd data) and remove the kubeconfig."""
    binaries = KubeBinaries(bin_dir=bin_dir)
    workdir = kwok_workdir(state_dir)
    failures = []
    for region in regions:
        name = cluster_name(prefix=cluster_prefix, region=region)
        if not _cluster_dir(workdir, name).exists():
            continue
        # kwokctl delete refuses an empty --kubeconfig; give it a file of its own so ~/.kube/config is never edited.
        scratch_kubeconfig = workdir / "kwokctl-kubeconfig.yaml"
        result = _kwokctl(binaries, workdir, ["delete", "cluster", "--name", name, "--kubeconfig", str(scratch_kubeconfig)])
        if result.returncode != 0:
            failures.append(f"{name}: {_output(result)}")
    kubeconfig_path(state_dir).unlink(missing_ok=True)
    if failures:
        raise SandboxClusterError("kwokctl delete cluster failed for " + "; ".join(failures))


def sandbox_cluster_status(
    *,
    regions: list[str],
    state_dir: Path,
    cluster_prefix: str = DEFAULT_CLUSTER_PREFIX,
) -> list[SandboxClusterStatus]:
    """Whether each region's cluster exists, its API server answers, and how many of its nodes are Ready."""
    workdir = kwok_workdir(state_dir)
    statuses = []
    for region in regions:
        name = cluster_name(prefix=cluster_prefix, region=region)
        status = SandboxClusterStatus(region=region, cluster_name=name, exists=_cluster_dir(workdir, name).exists())
        if status.exists:
            _probe(status=status, kubeconfig=_cluster_dir(workdir, name) / "kubeconfig.yaml")
        statuses.append(status)
    return statuses


def api_client(*, clusters: SandboxClusters, region: str) -> k8s.ApiClient:
    """An official-client ApiClient for one region's context (caller closes it)."""
    return k8s_config.new_client_from_config(config_file=str(clusters.kubeconfig), context=clusters.contexts[region])


def _cluster_dir(workdir: Path, name: str) -> Path:
    return workdir / "clusters" / name


def _kwokctl(
    binaries: KubeBinaries, workdir: Path, args: list[str], timeout: float = CREATE_TIMEOUT_SECONDS + 60
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KWOK_WORKDIR": str(workdir)}
    return subprocess.run(
        [str(binaries.kwokctl), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return (result.stderr.strip() + "\n" + result.stdout.strip()).strip()[-4000:]


@contextmanager
def port_picking_lock() -> Iterator[None]:
    """Held while kwokctl picks ports and starts processes, and while `sandbox.control_plane` restarts a
    process on its fixed port (a port freed by a stop must not be picked by a kwokctl run meanwhile).
    Not re-entrant: acquire it once per process."""
    with _PORT_PICKING_LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _ensure_cluster_running(*, binaries: KubeBinaries, workdir: Path, name: str, region: str) -> None:
    kubeconfig = _cluster_dir(workdir, name) / "kubeconfig.yaml"
    if kubeconfig.exists():
        probe = SandboxClusterStatus(region=region, cluster_name=name, exists=True)
        _probe(status=probe, kubeconfig=kubeconfig)
        if probe.apiserver_ready:
            return
        with port_picking_lock():
            result = _kwokctl(binaries, workdir, ["start", "cluster", "--name", name, "--timeout", "5m", "--wait", "2m"])
        if result.returncode != 0:
            raise SandboxClusterError(f"kwokctl start cluster {name} (region {region}) failed:\n{_output(result)}")
        return
    args = [
        "create", "cluster",
        "--name", name,
        "--runtime", "binary",
        "--kube-apiserver-binary", str(binaries.kube_apiserver),
        "--kube-controller-manager-binary", str(binaries.kube_controller_manager),
        "--kube-scheduler-binary", str(binaries.kube_scheduler),
        "--etcd-binary", str(binaries.etcd),
        "--kwok-controller-binary", str(binaries.kwok),
        "--kube-authorization=true",
        "--kube-admission=true",
        "--extra-args", f"kube-apiserver=service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        "--config", str(_write_kwok_config(workdir, name)),
        *_audit_args(workdir, name),
        "--kubeconfig", "",  # never touch ~/.kube/config; pitstop writes its own kubeconfig
        "--timeout", f"{CREATE_TIMEOUT_SECONDS}s",
        "--wait", "2m",
    ]  # fmt: skip
    with port_picking_lock():
        result = _kwokctl(binaries, workdir, args)
    if result.returncode != 0:
        raise SandboxClusterError(f"kwokctl create cluster {name} (region {region}) failed:\n{_output(result)}")


def _audit_args(workdir: Path, name: str) -> list[str]:
    """kube-apiserver writes an audit log of write verbs (`sandbox.audit`: policy, where the log is, rotation)."""
    policy = write_audit_policy(workdir / f"{name}-audit-policy.yaml")
    return [
        "--kube-audit-policy", str(policy),
        "--extra-args", f"kube-apiserver=audit-log-maxsize={AUDIT_LOG_MAX_MB}",
        "--extra-args", f"kube-apiserver=audit-log-maxbackup={AUDIT_LOG_MAX_BACKUPS}",
    ]  # fmt: skip


def _write_kwok_config(workdir: Path, name: str) -> Path:
    """The kwokctl config file: kwokctl's options and every Stage the kwok controller plays (kwok's and pitstop's)."""
    target = workdir / f"{name}-config.yaml"
    target.write_text("\n---\n".join(path.read_text() for path in KWOK_CONFIG_FILES))
    return target


def clusters_listening_beyond_loopback(
    *,
    regions: list[str],
    state_dir: Path,
    cluster_prefix: str = DEFAULT_CLUSTER_PREFIX,
) -> dict[str, str]:
    """region -> bind address of each existing cluster whose saved kwokctl configuration binds beyond loopback.

    Those were created before the sandbox was loopback-only; kwokctl restarts them with their old arguments.
    """
    exposed = {}
    workdir = kwok_workdir(state_dir)
    for region in regions:
        saved = _cluster_dir(workdir, cluster_name(prefix=cluster_prefix, region=region)) / "kwok.yaml"
        if not saved.exists():
            continue
        address = saved_bind_address(saved.read_text())
        if address not in LOOPBACK_ADDRESSES:
            exposed[region] = address
    return exposed


def saved_bind_address(saved_config: str) -> str:
    """The bind address in a cluster's saved kwokctl configuration (`kwok.yaml`); kwokctl's default if absent."""
    for document in yaml.safe_load_all(saved_config):
        if isinstance(document, dict) and document.get("kind") == "KwokctlConfiguration":
            return str((document.get("options") or {}).get("bindAddress") or KWOKCTL_DEFAULT_BIND_ADDRESS)
    return KWOKCTL_DEFAULT_BIND_ADDRESS


def _write_kubeconfig(*, workdir: Path, names: dict[str, str], target: Path) -> dict[str, str]:
    """Merge each cluster's kubeconfig into `target`, every entry renamed to its region."""
    merged: dict[str, object] = {"apiVersion": "v1", "kind": "Config", "preferences": {}}
    clusters, users, contexts, urls = [], [], [], {}
    for region, name in names.items():
        source = yaml.safe_load((_cluster_dir(workdir, name) / "kubeconfig.yaml").read_text())
        cluster = source["clusters"][0]["cluster"]
        user = source["users"][0]["user"]
        clusters.append({"name": region, "cluster": cluster})
        users.append({"name": region, "user": user})
        contexts.append({"name": region, "context": {"cluster": region, "user": region}})
        urls[region] = cluster["server"]
    merged.update(clusters=clusters, users=users, contexts=contexts, **{"current-context": next(iter(names))})
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_text(yaml.safe_dump(merged, sort_keys=False))
    partial.chmod(0o600)
    os.replace(partial, target)
    return urls


def _probe(*, status: SandboxClusterStatus, kubeconfig: Path) -> None:
    try:
        api = k8s_config.new_client_from_config(config_file=str(kubeconfig))
    except Exception as exc:  # unreadable kubeconfig: report, do not crash a status call
        status.error = f"cannot load {kubeconfig}: {exc}"
        return
    try:
        status.apiserver_url = api.configuration.host
        k8s.VersionApi(api).get_code(_request_timeout=3)
        status.apiserver_ready = True
        nodes = k8s.CoreV1Api(api).list_node(_request_timeout=5).items
        status.nodes_total = len(nodes)
        status.nodes_ready = sum(1 for node in nodes if node_is_ready(node))
    except Exception as exc:  # connection refused, TLS, timeout: the cluster is not serving
        status.error = f"{type(exc).__name__}: {exc}"[:500]
    finally:
        api.close()



def main(argv: list[str] | None = None) -> int:
    """`python -m pitstop.sandbox.clusters create|delete|status` for the configured regions and state dir."""
    import argparse
    import sys

    from pitstop.config import load_settings
    from pitstop.sandbox.binaries import GoBuildError, MissingBinariesError, ensure_binaries, locate_binaries

    parser = argparse.ArgumentParser(prog="python -m pitstop.sandbox.clusters", description=main.__doc__)
    parser.add_argument("command", choices=["create", "delete", "status"])
    parser.add_argument("--regions", help="comma-separated regions (default: the configured sandbox regions)")
    args = parser.parse_args(argv)
    settings = load_settings()
    regions = args.regions.split(",") if args.regions else settings.sandbox.regions
    state_dir = settings.state_dir
    try:
        if args.command == "status":
            for status in sandbox_cluster_status(regions=regions, state_dir=state_dir):
                print(status.model_dump_json())
            return 0
        if args.command == "create":
            binaries = ensure_binaries(progress=lambda line: print(line, file=sys.stderr, flush=True))
            clusters = create_sandbox_clusters(regions=regions, state_dir=state_dir, bin_dir=binaries.bin_dir)
            print(clusters.model_dump_json(indent=2))
            return 0
        delete_sandbox_clusters(regions=regions, state_dir=state_dir, bin_dir=locate_binaries().bin_dir)
        return 0
    except (GoBuildError, MissingBinariesError, SandboxClusterError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
