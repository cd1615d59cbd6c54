"""End to end, everything real: a release of a bad version crash-loops -> the real Prometheus fires
`CrashLooping` -> the real Alertmanager delivers it to pitstop's webhook (bearer token) -> an Incident
workflow rolls the service back (the alert began after its last rollout) through the runbook interpreter on
the real kube-apiserver -> the alert resolves -> the incident closes as recovered. Prints MTTR
(fault injected -> alert resolved) and alert delivered -> first action.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from pitstop.activities import build_activities
from pitstop.config import Settings
from pitstop.incidents import IncidentPhase, IncidentStatus, postmortem_markdown
from pitstop.sandbox.faults import CrashLoop, clear_fault, inject_fault
from pitstop.sandbox.kube_objects import get_object, merge_patch
from pitstop.sandbox.monitoring import AlertRuleSettings, MonitoringSettings, start_monitoring
from pitstop.workers.clients import build_activity_clients
from pitstop.workers.webhook import serve
from pitstop.workers.worker import build_workers

pytestmark = pytest.mark.sandbox

REGION = "eu-central"
BAD_VERSION = "v9.9.9-bad"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _deployment_ready(api_client, namespace: str, name: str, version: str) -> bool:  # type: ignore[no-untyped-def]
    dep = get_object(api_client, kind="Deployment", name=name, namespace=namespace) or {}
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    return (labels.get("version") == version
            and status.get("observedGeneration", 0) >= (dep.get("metadata") or {}).get("generation", 1)
            and status.get("updatedReplicas", 0) == spec.get("replicas")
            and status.get("availableReplicas", 0) == spec.get("replicas")
            and status.get("replicas", 0) == spec.get("replicas"))


async def _incidents_for(client: Client, service: str, since: datetime) -> list[IncidentStatus]:
    found = []
    async for wf in client.list_workflows("WorkflowType = 'Incident'"):
        if wf.start_time < since:
            continue
        status = await client.get_workflow_handle(wf.id).query("status", result_type=IncidentStatus)
        if status.target is not None and status.target.service == service:
            found.append(status)
    return found


def start_fast_monitoring(sm: Any, *, port: int, token: str, state_dir: Path) -> Any:
    """Prometheus + Alertmanager scraping and evaluating every second, alerting pitstop's webhook on `port`."""
    return start_monitoring(
        settings=MonitoringSettings(
            simulator_target=sm.simulator.target, regions=list(sm.clusters.contexts),
            scrape_interval="1s", evaluation_interval="1s",
            webhook_url=f"http://127.0.0.1:{port}/alerts", webhook_bearer_token=token,
            group_wait="1s", group_interval="2s", repeat_interval="10s", resolve_timeout="10s",
            rules=AlertRuleSettings(window="10s", restart_window="20s", for_duration="2s"),
        ),
        state_dir=state_dir,
    )


async def wait_for_recovery(client: Client, service: str, since: datetime, *, timeout: float) -> list[IncidentStatus]:
    """The service's incidents since `since`, once all are final and one recovered (bounded by `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        incidents = await _incidents_for(client, service, since)
        if incidents and all(i.phase.final for i in incidents) and any(i.phase == IncidentPhase.RECOVERED for i in incidents):
            return incidents
        assert time.monotonic() < deadline, "incidents not recovered within {:g}s:\n{}".format(timeout, "\n".join(
            f"{i.incident_id} {i.phase.value}:\n  " + "\n  ".join(e.message for e in i.timeline) for i in incidents))
        await asyncio.sleep(1.0)


async def test_crash_loop_is_rolled_back_and_the_alert_resolves(
    sandbox_monitoring, temporal_client: Client, pitstop_settings: Settings, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    sm = sandbox_monitoring
    service = next(s for s in sm.services if not s.canary_version and s.replicas >= 1)
    namespace, name = service.team, service.name
    api = sm.api_clients[REGION]
    # the live version: a delivery test earlier in the session may have promoted a newer one than the fleet spec's
    live = get_object(api, kind="Deployment", name=name, namespace=namespace) or {}
    good_version = ((live.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels", {}).get(
        "version", service.version)
    token = secrets.token_urlsafe(16)
    port = _free_port()
    monitoring = None
    fault_id = None
    try:
        monitoring = start_fast_monitoring(sm, port=port, token=token, state_dir=tmp_path / "monitoring")
        settings = Settings(
            state_dir=pitstop_settings.state_dir,
            temporal=pitstop_settings.temporal.model_dump(),
            worker={"metrics_port": 0},
            kubernetes={"regions": {region: {"kubeconfig": sm.clusters.kubeconfig, "context": context}
                                    for region, context in sm.clusters.contexts.items()}},
            prometheus={"url": monitoring.prometheus_url},
            webhook={"token": token, "listen": f"127.0.0.1:{port}"},
        )
        activity_set = build_activities(build_activity_clients(settings, temporal=temporal_client, require_clusters=True))
        ready, stop = asyncio.Event(), asyncio.Event()
        with ThreadPoolExecutor(max_workers=64) as executor:
            workers = build_workers(client=temporal_client, settings=settings, activity_set=activity_set, executor=executor)
            async with contextlib.AsyncExitStack() as stack:
                for worker in workers:
                    await stack.enter_async_context(worker)
                webhook = asyncio.create_task(serve(settings, client=temporal_client, ready=ready, stop=stop, port=port))
                await asyncio.wait_for(ready.wait(), 15)

                # a release of a bad version ...
                started = datetime.now(UTC)
                template_labels = {"version": BAD_VERSION}
                merge_patch(api, kind="Deployment", name=name, namespace=namespace, patch={"spec": {"template": {
                    "metadata": {"labels": template_labels},
                    "spec": {"containers": [{"name": name, "image": f"registry.pitstop.dev/{namespace}/{name}:{BAD_VERSION}"}]},
                }}})
                deadline = time.monotonic() + 120
                while not _deployment_ready(api, namespace, name, BAD_VERSION):
                    assert time.monotonic() < deadline, "the bad release never rolled out"
                    await asyncio.sleep(0.5)
                # ... that crash-loops
                fault = inject_fault(api_client=api, fault=CrashLoop(service=name, version=BAD_VERSION,
                                                                      restart_interval_seconds=2))
                fault_id, fault_at = fault.id, time.monotonic()
                fault_wall = datetime.now(UTC)

                incidents = await wait_for_recovery(temporal_client, name, started, timeout=240)
                stop.set()
                await asyncio.wait_for(webhook, 15)

        recovered = next(i for i in incidents if i.phase == IncidentPhase.RECOVERED)
        acted = [a for i in incidents for a in i.actions if not a.dry_run]
        assert [a.rung for a in acted] == ["rollback"], [(i.incident_id, [e.message for e in i.timeline]) for i in incidents]
        assert acted[0].status == "succeeded"
        assert _deployment_ready(api, namespace, name, good_version), "the service is not back on its good version"
        assert recovered.evidence.get("pods"), "no pod evidence attached"
        assert recovered.resolved_at is not None and recovered.first_action_at is not None
        mttr = (recovered.resolved_at - fault_wall).total_seconds()
        first_received = min(i.first_received_at for i in incidents if i.first_received_at)
        first_action = min(i.first_action_at for i in incidents if i.first_action_at)
        print(f"\nMTTR (fault injected -> alert resolved, Alertmanager endsAt): {mttr:.1f}s")
        print(f"MTTR seen by pitstop (fault injected -> resolved notification handled): "
              f"{time.monotonic() - fault_at:.1f}s (upper bound)")
        print(f"alert delivered -> first action: {(first_action - first_received).total_seconds():.2f}s")
        print(f"fault injected -> alert delivered: {(first_received - fault_wall).total_seconds():.1f}s")
        print(f"incidents: {len(incidents)} ({', '.join(f'{i.incident_id}={i.phase.value}' for i in incidents)})")
        draft = postmortem_markdown(recovered)
        assert "rollback" in draft and "## Timeline" in draft
    finally:
        if fault_id:
            clear_fault(api_client=api, fault_id=fault_id)
        if monitoring is not None:
            monitoring.stop()
