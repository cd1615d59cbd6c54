"""The shipped `fleet-hygiene` runbook end to end: the interpreter workflow on the real Temporal server, the
product's workers (`workers.worker.build_workers`), `kubernetes.inventory` in both sandbox regions run as the
worker's service account with `deploy/rbac.yaml` applied, and the report attached to the run (its outcome and
its history). On the clean fleet the fleet's objects have no findings; faults planted by this test (a Deployment
without a readiness probe, a `latest` image tag, a PodDisruptionBudget with maxUnavailable 0) are each found in
the right team's report; the optional notification reaches a real HTTP receiver.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import ApiClient
from kubernetes.config import new_client_from_config
from temporalio.client import Client

from pitstop.activities.clients import ActivityClients
from pitstop.activities.kube_api import KubeJson
from pitstop.config import Settings
from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest
from pitstop.steps.hygiene import Check, Finding, HygieneReport
from pitstop.sandbox.clusters import SandboxClusters
from pitstop.sandbox.fleet import SANDBOX_NAMESPACE, ServiceSpec, apply_fleet, expand_fleet, load_fleet_spec
from pitstop.sandbox.kube_objects import get_object
from tests.fixtures.monitoring import SANDBOX_TEST_SERVICES, AlertWebhookReceiver
from pitstop.workers.run_history import fetch_chain, timeline
from pitstop.workflows import ALL_WORKFLOWS

from .step_library_support import WORKER_SA, apply_deploy_rbac, impersonating, product_workers

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]

RUNBOOK = "fleet-hygiene"
NOTIFY_ENV = "PITSTOP_RUNBOOK_HYGIENE_WEBHOOK_URL"  # the runbook's literal url_env (allowlisted by default)


@pytest.fixture(scope="module")
def admin(kube_sandbox: SandboxClusters) -> Iterator[dict[str, ApiClient]]:
    clients = {region: new_client_from_config(config_file=str(kube_sandbox.kubeconfig), context=context)
               for region, context in kube_sandbox.contexts.items()}
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture(scope="module")
def fleet(admin: dict[str, ApiClient]) -> list[ServiceSpec]:
    """The session's sandbox fleet; applied here only where no one applied it yet (it is shared, left as found)."""
    services = expand_fleet(load_fleet_spec(), services=SANDBOX_TEST_SERVICES)
    for region, client in admin.items():
        if get_object(client, kind="Namespace", name=SANDBOX_NAMESPACE, namespace=None) is None:
            apply_fleet(api_client=client, region=region, services=services)
    return services


@pytest.fixture(scope="module")
def as_worker(kube_sandbox: SandboxClusters) -> Iterator[ActivityClients]:
    """The worker's clients, every request made as its service account, with deploy/rbac.yaml applied."""
    for region in kube_sandbox.contexts:
        apply_deploy_rbac(kube_sandbox, region)
    clients = impersonating(kube_sandbox, WORKER_SA)
    yield clients
    for api_client in clients.kube.values():
        api_client.close()


async def run_hygiene(client: Client, task_queue: str, regions: list[str], **inputs: Any) -> tuple[str, RunbookOutcome]:
    """What the schedule (or `pitstop run fleet-hygiene`) starts: workflow `Runbook` with a `RunbookRequest`."""
    workflow_id = f"{RUNBOOK}-{uuid.uuid4().hex[:8]}"
    outcome = await client.execute_workflow(
        RUNBOOK_WORKFLOW, RunbookRequest(runbook=RUNBOOK, inputs={"regions": regions, **inputs}, trigger="cli", started_by="test"),
        id=workflow_id, task_queue=task_queue, result_type=RunbookOutcome,
    )
    assert outcome.status == "succeeded", outcome
    return workflow_id, outcome


def fleet_objects(services: list[ServiceSpec]) -> set[tuple[str, str, str]]:
    """(kind, namespace, name) of every object the fleet owns that a finding can name."""
    found = set()
    for s in services:
        found |= {("Deployment", s.team, s.name), ("PodDisruptionBudget", s.team, s.name), ("VirtualService", s.team, s.name)}
        if s.canary_version:
            found.add(("Deployment", s.team, f"{s.name}-canary"))
    return found


def live_images(admin: dict[str, ApiClient], namespace: str, name: str) -> dict[str, str]:
    return {region: KubeJson(client).get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
            ["spec"]["template"]["spec"]["containers"][0]["image"] for region, client in admin.items()}


def planted_deployment(name: str, *, image: str, probe: bool, team_label: str | None = None) -> dict[str, Any]:
    """Otherwise clean: requests and limits set, 2 replicas (pods never scheduled: no node matches)."""
    container: dict[str, Any] = {
        "name": "app", "image": image,
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "20m", "memory": "32Mi"}},
    }
    if probe:
        container["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": 8080}}
    labels = {"app": name}
    meta_labels = {**labels, **({"pitstop.dev/team": team_label} if team_label else {})}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": meta_labels},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"nodeSelector": {"pitstop.test/no-such-node": "true"}, "containers": [container]}}},
    }


async def test_fleet_hygiene_finds_planted_faults_and_nothing_on_the_clean_fleet(
    temporal_client: Client, task_queue: str, kube_sandbox: SandboxClusters, admin: dict[str, ApiClient],
    fleet: list[ServiceSpec], as_worker: ActivityClients,
) -> None:
    regions = sorted(kube_sandbox.contexts)
    owned = fleet_objects(fleet)
    settings = Settings(temporal={"task_queue": task_queue}, kubernetes=as_worker.settings.kubernetes)
    as_worker.temporal = temporal_client
    async with product_workers(temporal_client, settings, as_worker, ALL_WORKFLOWS):
        # ---- the clean fleet: no finding names a fleet object (image drift only if the clusters really differ)
        clean_id, outcome = await run_hygiene(temporal_client, task_queue, regions)
        report = HygieneReport.model_validate(outcome.outputs["report"])
        assert report.regions == regions and outcome.steps["notify"] == "skipped"  # notify defaults to false
        fleet_deployments = sum(1 for kind, *_ in owned if kind == "Deployment")
        assert report.deployments >= fleet_deployments * len(regions)
        assert {s.team for s in fleet} <= {t.team for t in report.teams}
        on_fleet = [f for f in (f for t in report.teams for f in t.findings) if (f.kind, f.namespace, f.name) in owned]
        for finding in on_fleet:
            assert finding.check is Check.IMAGE_DRIFT, f"false positive on the clean fleet: {finding}"
            images = live_images(admin, finding.namespace, finding.name)  # an earlier test released in one region
            assert len(set(images.values())) > 1, (finding, images)

        # the report is attached to the run: its history holds the step's output, Markdown and JSON
        entries = timeline(await fetch_chain(temporal_client, clean_id))["timeline"]
        (recorded,) = [e for e in entries if e.get("type") == "hygiene.report"]
        assert HygieneReport.model_validate(recorded["outputs"]) == report
        assert len([e for e in entries if e.get("type") == "kubernetes.inventory"]) == len(regions)
        assert all(t.markdown.startswith(f"## Fleet hygiene: {t.team}") for t in report.teams)

        # ---- plant faults: each found once, in the right team's report
        suffix = uuid.uuid4().hex[:5]
        no_probe, latest, guarded = f"hyg-noprobe-{suffix}", f"hyg-latest-{suffix}", f"hyg-guarded-{suffix}"
        planted: list[tuple[str, str, str, str]] = []  # (region, namespace, plural, name) to delete

        def plant(region: str, namespace: str, obj: dict[str, Any]) -> None:
            plural = "deployments" if obj["kind"] == "Deployment" else "poddisruptionbudgets"
            group = "apps/v1" if obj["kind"] == "Deployment" else "policy/v1"
            KubeJson(admin[region]).post(f"/apis/{group}/namespaces/{namespace}/{plural}", obj)
            planted.append((region, namespace, f"/apis/{group}/namespaces/{namespace}/{plural}", obj["metadata"]["name"]))

        receiver = AlertWebhookReceiver()
        try:
            plant(regions[0], "team-telematics", planted_deployment(no_probe, image="registry.example/np:1.0", probe=False))
            for region in regions:  # the same `latest` Deployment in every region: one finding naming both
                plant(region, "team-platform",
                      planted_deployment(latest, image="registry.example/lt:latest", probe=True, team_label="team-ota"))
            plant(regions[-1], "team-identity", planted_deployment(guarded, image="registry.example/g:1.0", probe=True))
            plant(regions[-1], "team-identity", {
                "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": guarded},
                "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": guarded}}}})

            as_worker.environ = {NOTIFY_ENV: receiver.url}
            _, outcome = await run_hygiene(temporal_client, task_queue, regions, notify=True)
            report = HygieneReport.model_validate(outcome.outputs["report"])

            def only(team: str, name: str) -> Finding:
                team_report = report.team(team)
                assert team_report is not None, [t.team for t in report.teams]
                (finding,) = [f for f in team_report.findings if f.name == name]
                assert f"{finding.kind} {finding.namespace}/{name}" in team_report.markdown
                return finding

            found = only("team-telematics", no_probe)
            assert (found.check, found.regions, found.detail) == (
                Check.MISSING_READINESS_PROBE, [regions[0]], "no readinessProbe on container app")
            found = only("team-ota", latest)  # the team label wins over the namespace
            assert (found.check, found.regions, found.namespace) == (Check.LATEST_TAG, regions, "team-platform")
            found = only("team-identity", guarded)
            assert (found.check, found.kind, found.regions) == (Check.PDB_BLOCKS_EVICTIONS, "PodDisruptionBudget", [regions[-1]])
            assert found.detail.startswith("maxUnavailable 0")
            assert all(f.name not in (no_probe, latest, guarded) for t in report.teams if t.team not in
                       ("team-telematics", "team-ota", "team-identity") for f in t.findings)

            # the optional notification: a Slack-compatible message with the counts per team
            assert outcome.steps["notify"] == "succeeded"
            (delivery,) = receiver.received
            text = delivery.body["text"]
            assert text.splitlines()[0].startswith(f"Fleet hygiene over {', '.join(regions)}: ")
            assert all(f"- {team}: " in text for team in ("team-telematics", "team-ota", "team-identity")), text
        finally:
            receiver.close()
            for region, _, collection, name in reversed(planted):
                KubeJson(admin[region]).request("DELETE", f"{collection}/{name}")
