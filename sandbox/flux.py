"""Flux in the sandbox: source-controller + kustomize-controller as our own processes, one pair for every region.

The pair runs against the first ("home") region's cluster, where the Flux CRDs are applied server-side and the
Flux objects live in `flux-system`; each region has a GitRepository (its repo on the sandbox's git server,
`sandbox.git_server`) and a Kustomization that applies it to that region's cluster through `spec.kubeConfig`
(a Secret holding the region's flattened kubeconfig). One pair is lighter than one per region (~300 MB RSS in all).
Every listener binds 127.0.0.1 on a free port (the default storage address :9090 would collide with Prometheus).

What goes into git for a git-managed team (`gitops_files`): per service one file with its Deployment, Service and
PDB (git's: drift is corrected) and its VirtualService and DestinationRule carved out with
`kustomize.toolkit.fluxcd.io/ssa: IfNotPresent` (pitstop's after creation: route weights, mirrors, subsets).
The Deployment names its git source (`pitstop.dev/gitops-repository` / `-path`) so a promotion is committed there.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import ApiClient

from pitstop.activities.gitops import FLUX_KUSTOMIZATION
from pitstop.activities.kube_api import JsonObject, KubeJson, ResourceKind
from pitstop.gitops import PATH_ANNOTATION, REPOSITORY_ANNOTATION, carve_out
from pitstop.sandbox.fleet import ServiceSpec, fleet_manifests
from pitstop.sandbox.flux_binaries import crd_files, ensure_flux_binaries
from pitstop.sandbox.temporal_server import free_port

FLUX_NAMESPACE = "flux-system"
FIELD_MANAGER = "pitstop-sandbox-flux"
GIT_SECRET = "sandbox-git-auth"
CRD = ResourceKind("apiextensions.k8s.io/v1", "customresourcedefinitions", namespaced=False)
NAMESPACE = ResourceKind("v1", "namespaces", namespaced=False)
SECRET = ResourceKind("v1", "secrets")
EVENT = ResourceKind("v1", "events")
GIT_REPOSITORY = ResourceKind("source.toolkit.fluxcd.io/v1", "gitrepositories")
KUSTOMIZATION = FLUX_KUSTOMIZATION
STARTUP_TIMEOUT = 60.0


def repository_name(region: str) -> str:
    """The git repository (and Flux GitRepository/Kustomization name) of one region."""
    return f"fleet-{region}"


def service_path(service: ServiceSpec) -> str:
    return f"{service.team}/{service.name}.yaml"


def gitops_files(services: list[ServiceSpec], *, region: str) -> dict[str, str]:
    """The repository content of one region: one multi-document file per service (see the module docstring)."""
    files: dict[str, str] = {}
    for service in services:
        documents = []
        for obj in fleet_manifests(service):
            if obj["kind"] == "Deployment" and obj["metadata"]["name"] == service.name:
                annotations = obj["metadata"].setdefault("annotations", {})
                annotations[REPOSITORY_ANNOTATION] = repository_name(region)
                annotations[PATH_ANNOTATION] = service_path(service)
            documents.append(carve_out(obj))
        files[service_path(service)] = yaml.safe_dump_all(documents, sort_keys=False)
    return files


def flat_kubeconfig(kubeconfig: Path, context: str) -> str:
    """One context of the sandbox kubeconfig with its certificates inlined (for a Secret or a controller)."""
    done = subprocess.run(["kubectl", "config", "view", "--kubeconfig", str(kubeconfig), "--context", context,
                           "--minify", "--flatten", "--raw"], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"kubectl config view of context {context} in {kubeconfig} failed: {done.stderr.strip()}")
    return done.stdout


@dataclass
class FluxControllers:
    """The running pair; `stop` ends both (SIGTERM, then SIGKILL after 10 s)."""

    processes: dict[str, subprocess.Popen[bytes]]
    health_urls: dict[str, str]
    logs: dict[str, Path] = field(default_factory=dict)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _wait_healthy(controllers: FluxControllers, timeout: float = STARTUP_TIMEOUT) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    pending = dict(controllers.health_urls)
    while pending:
        for name, url in list(pending.items()):
            if controllers.processes[name].poll() is not None:
                tail = controllers.logs[name].read_text()[-2000:]
                raise RuntimeError(f"{name} exited with {controllers.processes[name].returncode}: {tail}")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    pending.pop(name)
            except httpx.HTTPError:
                pass
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"Flux controllers not healthy within {timeout:g}s: {sorted(pending)}")
        time.sleep(0.3)


def start_controllers(*, kubeconfig: Path, context: str, state_dir: Path) -> FluxControllers:
    """Both controllers against `context`'s cluster (CRDs must be applied first: `apply_crds`)."""
    bin_dir = ensure_flux_binaries()
    state_dir.mkdir(parents=True, exist_ok=True)
    home_kubeconfig = state_dir / "home-kubeconfig.yaml"
    home_kubeconfig.write_text(flat_kubeconfig(kubeconfig, context))
    home_kubeconfig.chmod(0o600)
    env = {**os.environ, "KUBECONFIG": str(home_kubeconfig), "RUNTIME_NAMESPACE": FLUX_NAMESPACE}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    health: dict[str, str] = {}
    logs: dict[str, Path] = {}
    storage_port = free_port()
    (state_dir / "storage").mkdir(exist_ok=True)  # source-controller refuses a storage path that does not exist yet
    for name in ("source-controller", "kustomize-controller"):
        health_port = free_port()
        args = [str(bin_dir / name), "--watch-all-namespaces", "--enable-leader-election=false", "--log-level=info",
                f"--metrics-addr=127.0.0.1:{free_port()}", f"--health-addr=127.0.0.1:{health_port}"]
        if name == "source-controller":
            args += [f"--storage-path={state_dir / 'storage'}", f"--storage-addr=127.0.0.1:{storage_port}",
                     f"--storage-adv-addr=127.0.0.1:{storage_port}"]
        logs[name] = state_dir / f"{name}.log"
        with logs[name].open("wb") as log:
            processes[name] = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=state_dir)
        health[name] = f"http://127.0.0.1:{health_port}/readyz"
    controllers = FluxControllers(processes=processes, health_urls=health, logs=logs)
    try:
        _wait_healthy(controllers)
    except BaseException:
        controllers.stop()
        raise
    return controllers


def apply_crds(api: ApiClient) -> None:
    """Flux's CRDs (from the controllers' module sources) applied server-side, then until Established."""
    kube = KubeJson(api, field_manager=FIELD_MANAGER)
    names = []
    for path in crd_files():
        for crd in yaml.safe_load_all(path.read_text()):
            if crd:
                kube.apply(CRD.object_path(name=crd["metadata"]["name"]), crd)
                names.append(crd["metadata"]["name"])
    deadline = time.monotonic() + 30
    for name in names:
        while not any(c.get("type") == "Established" and c.get("status") == "True"
                      for c in (kube.get(CRD.object_path(name=name)).get("status") or {}).get("conditions") or []):
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not established within 30s")
            time.sleep(0.2)


def _secret(name: str, data: dict[str, str]) -> JsonObject:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": FLUX_NAMESPACE}, "data": encoded}


def sync_objects(*, region: str, repo_url: str, kubeconfig_text: str, interval: str = "10s") -> list[tuple[ResourceKind, JsonObject]]:
    """The kubeconfig Secret, GitRepository and Kustomization (prune on) that sync one region from git."""
    name = repository_name(region)
    meta = {"name": name, "namespace": FLUX_NAMESPACE}
    return [
        (SECRET, _secret(f"kubeconfig-{region}", {"value": kubeconfig_text})),
        (GIT_REPOSITORY, {"apiVersion": GIT_REPOSITORY.group_version, "kind": "GitRepository", "metadata": meta,
                          "spec": {"url": repo_url, "interval": interval, "timeout": "20s", "ref": {"branch": "main"},
                                   "secretRef": {"name": GIT_SECRET}}}),
        (KUSTOMIZATION, {"apiVersion": KUSTOMIZATION.group_version, "kind": "Kustomization", "metadata": meta,
                         "spec": {"interval": interval, "retryInterval": "5s", "timeout": "30s", "path": "./",
                                  "prune": True, "sourceRef": {"kind": "GitRepository", "name": name},
                                  "kubeConfig": {"secretRef": {"name": f"kubeconfig-{region}"}}}}),
    ]


def apply_sync(api: ApiClient, *, git_token: str, regions: dict[str, tuple[str, str]], interval: str = "10s") -> None:
    """`regions`: region -> (repo URL, flattened kubeconfig). Creates flux-system, the git Secret and each sync."""
    kube = KubeJson(api, field_manager=FIELD_MANAGER)
    kube.apply(NAMESPACE.object_path(name=FLUX_NAMESPACE), {"apiVersion": "v1", "kind": "Namespace",
                                                             "metadata": {"name": FLUX_NAMESPACE}})
    kube.apply(SECRET.object_path(name=GIT_SECRET, namespace=FLUX_NAMESPACE),
               _secret(GIT_SECRET, {"username": "git", "password": git_token}))
    for region, (repo_url, kubeconfig_text) in regions.items():
        for kind, obj in sync_objects(region=region, repo_url=repo_url, kubeconfig_text=kubeconfig_text, interval=interval):
            kube.apply(kind.object_path(name=obj["metadata"]["name"], namespace=FLUX_NAMESPACE), obj)


def kustomization(api: ApiClient, region: str) -> JsonObject:
    return KubeJson(api).get(KUSTOMIZATION.object_path(name=repository_name(region), namespace=FLUX_NAMESPACE))


def applied_revision(api: ApiClient, region: str) -> str | None:
    """The git revision the region's Kustomization last applied successfully (`main@sha1:<sha>`), if Ready."""
    status = kustomization(api, region).get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return status.get("lastAppliedRevision") if ready else None


def wait_applied(api: ApiClient, region: str, sha: str, *, timeout: float = 60.0) -> float:
    """Seconds until the region's Kustomization reports `sha` applied and Ready (bounded by `timeout`)."""
    started = time.monotonic()
    while True:
        revision = applied_revision(api, region)
        if revision and revision.endswith(sha):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            status = kustomization(api, region).get("status") or {}
            raise TimeoutError(f"Kustomization {repository_name(region)} did not apply {sha[:10]} within {timeout:g}s: "
                               f"{json.dumps(status.get('conditions'))[:1500]}")
        time.sleep(0.5)


def flux_events(api: ApiClient, region: str) -> list[JsonObject]:
    """The Kubernetes Events kustomize-controller recorded on the region's Kustomization (oldest first)."""
    events = KubeJson(api).items(EVENT.collection_path(FLUX_NAMESPACE),
                                 fieldSelector=f"involvedObject.name={repository_name(region)},involvedObject.kind=Kustomization")
    return sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")


def release_finalizers(api: ApiClient, regions: list[str]) -> None:
    """After the controllers stopped: delete the Flux objects without their finalizers (nothing is pruned)."""
    kube = KubeJson(api, field_manager=FIELD_MANAGER)
    for region in regions:
        for kind in (KUSTOMIZATION, GIT_REPOSITORY):
            path = kind.object_path(name=repository_name(region), namespace=FLUX_NAMESPACE)
            if kube.get_optional(path) is not None:
                kube.patch(path, {"metadata": {"finalizers": None}}, patch_type="merge")
                kube.request("DELETE", path)


def describe(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)[:500]


@dataclass
class GitopsSandbox:
    """Flux + the git server syncing some teams of the sandbox fleet; `stop` leaves their objects in place."""

    git: Any  # sandbox.git_server.GitServer
    controllers: FluxControllers
    home_api: ApiClient
    regions: list[str]
    seed_commits: dict[str, str]
    apply_seconds: dict[str, float]

    def stop(self) -> None:
        """Stop the controllers, delete the Flux objects without pruning anything, stop the git server."""
        try:
            self.controllers.stop()
            release_finalizers(self.home_api, self.regions)
        finally:
            self.git.close()


def start_gitops(*, kubeconfig: Path, contexts: dict[str, str], api_clients: dict[str, ApiClient],
                 services: list[ServiceSpec] | dict[str, list[ServiceSpec]], state_dir: Path, interval: str = "10s",
                 apply_timeout: float = 120.0) -> GitopsSandbox:
    """Seed a repository per region with `services` (gitops_files; one list for every region, or a list per
    region), start the git server and Flux, create each region's sync and wait (bounded) until every region applied
    its seed commit."""
    from pitstop.activities.git_access import GitRemote, GitWorkspace
    from pitstop.sandbox.git_server import GitServer

    regions = list(contexts)
    git = GitServer(state_dir / "git")
    controllers: FluxControllers | None = None
    home_api = api_clients[regions[0]]
    try:
        seeds: dict[str, str] = {}
        for region in regions:
            git.create_repo(repository_name(region))
            workspace = GitWorkspace(GitRemote(url=git.repo_url(repository_name(region)), token=git.token),
                                     state_dir / "seed" / region)
            seeded = services[region] if isinstance(services, dict) else services
            workspace.commit_files(gitops_files(seeded, region=region), message="services under git management",
                                   sign_off="pitstop sandbox")
            head = workspace.sync()
            assert head is not None
            seeds[region] = head
        apply_crds(home_api)
        controllers = start_controllers(kubeconfig=kubeconfig, context=contexts[regions[0]], state_dir=state_dir / "controllers")
        apply_sync(home_api, git_token=git.token, interval=interval, regions={
            region: (git.repo_url(repository_name(region)), flat_kubeconfig(kubeconfig, context))
            for region, context in contexts.items()})
        took = {region: wait_applied(home_api, region, seeds[region], timeout=apply_timeout) for region in regions}
        return GitopsSandbox(git=git, controllers=controllers, home_api=home_api, regions=regions,
                             seed_commits=seeds, apply_seconds=took)
    except BaseException:
        if controllers is not None:
            controllers.stop()
            release_finalizers(home_api, regions)
        git.close()
        raise
