"""pitstop's own Kubernetes manifests (`deploy/`, kustomize) render for each region's overlay and are accepted by the
region's real kube-apiserver in a server-side dry-run apply (schema, defaults, admission), and they hold what an SRE
expects: a worker per region serving that region, probes and resources on every container, PodDisruptionBudgets
that select the pods they guard, the webhook as a StatefulSet with a journal volume per replica, and exactly the
RBAC of `deploy/rbac.yaml`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pitstop.sandbox.clusters import SandboxClusters

from .step_library_support import apply_deploy_rbac

pytestmark = pytest.mark.sandbox

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ROOT / "tests" / "data" / "kustomize" / "overlays"
KUBECTL = "/usr/bin/kubectl"


def rendered(region: str) -> list[dict[str, Any]]:
    result = subprocess.run([KUBECTL, "kustomize", str(OVERLAYS / region)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def only(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].startswith(name)]
    return found


@pytest.mark.parametrize("region", ["eu-central", "us-east"])
def test_the_region_overlay_is_accepted_by_the_real_api_server(kube_sandbox: SandboxClusters, region: str) -> None:
    objects = rendered(region)
    apply_deploy_rbac(kube_sandbox, region)  # namespace `pitstop` exists for real, so the dry run can place objects
    dry_run = subprocess.run(
        [KUBECTL, "--kubeconfig", str(kube_sandbox.kubeconfig), "--context", kube_sandbox.contexts[region],
         "apply", "--server-side", "--dry-run=server", "--field-manager", "pitstop-deploy-test", "-o", "json", "-f", "-"],
        input=yaml.safe_dump_all(objects), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert dry_run.returncode == 0, dry_run.stderr
    answered = json.loads(dry_run.stdout)
    accepted = {(o["kind"], o["metadata"]["name"]) for o in answered.get("items", [answered])}
    assert accepted == {(o["kind"], o["metadata"]["name"]) for o in objects}

    config = only(objects, "ConfigMap", "pitstop-config")
    assert json.loads(config["data"]["PITSTOP_KUBERNETES__REGIONS"]) == {region: {}}  # in-cluster, its own region
    worker = only(objects, "Deployment", "pitstop-worker")
    webhook = only(objects, "StatefulSet", "pitstop-webhook")
    assert worker["spec"]["template"]["spec"]["serviceAccountName"] == "pitstop-worker"
    for workload in (worker, webhook):
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
        assert {"readinessProbe", "livenessProbe"} <= set(container) and container["resources"]["requests"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        labels = workload["spec"]["template"]["metadata"]["labels"]
        budget = only(objects, "PodDisruptionBudget", workload["metadata"]["name"])
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert webhook["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "journal"

    shipped = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all((ROOT / "deploy" / "rbac.yaml").read_text())
               if d and d["kind"].startswith("ClusterRole")}
    assert {(o["kind"], o["metadata"]["name"]): o for o in objects if o["kind"].startswith("ClusterRole")} == shipped
