"""Running `ChaosExperiment` runs against the real Temporal dev server in tests: a worker with the workflows, the
shared activities they call (leases, `delivery.measure`) and the regional chaos activities, and experiments whose
python providers record their calls (`tests.integration.chaos_providers`)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle

from pitstop.activities import activity_methods
from pitstop.activities.chaos import ChaosActivities
from pitstop.activities.clients import ActivityClients
from pitstop.activities.delivery import ReleaseAnalysisActivities
from pitstop.activities.leases import LeaseActivities
from pitstop.chaos.model import CHAOS_WORKFLOW, ChaosOutcome, ChaosRequest
from pitstop.config import Settings, regional_task_queue
from tests.fixtures.temporal import running_worker
from pitstop.workflows import ALL_WORKFLOWS

REGION = "eu-central"
PROVIDERS = "tests.integration.chaos_providers"
TEST_CHAOS_MODULES = ["chaosk8s.*", "chaosprometheus.*", "pitstop.chaos_toolkit.*", "tests.integration.chaos_providers"]


def chaos_settings(base: Settings, **overrides: Any) -> Settings:
    security = base.security.model_copy(update={"chaos_provider_modules": TEST_CHAOS_MODULES})
    return base.model_copy(update={"security": security, "chaos": base.chaos.model_copy(update={"heartbeat_seconds": 0.5}),
                                   **overrides})


@asynccontextmanager
async def chaos_engine(
    client: Client, task_queue: str, clients: ActivityClients, runbooks_dir: Path | None = None
) -> AsyncIterator[None]:
    """Workers for chaos runs; with `runbooks_dir`, also the runbook engine's activities (runbooks using the
    `chaos.experiment` step)."""
    shared = [*activity_methods(LeaseActivities(client, check_seconds=1.0)),
              *activity_methods(ReleaseAnalysisActivities(clients))]
    if runbooks_dir is not None:
        from pitstop.activities.runbook_catalog import RunbookCatalog
        from pitstop.activities.runbook_debug import EngineSteps

        shared += [*RunbookCatalog(runbooks_dir, reach=clients.reach()).activities(), *EngineSteps().activities()]
    regional = activity_methods(ChaosActivities(clients, REGION))
    async with running_worker(client, task_queue=task_queue, workflows=ALL_WORKFLOWS, activities=shared):
        async with running_worker(client, task_queue=regional_task_queue(task_queue, REGION), activities=regional):
            yield


def call(func: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "python", "module": PROVIDERS, "func": func, "arguments": arguments}


def experiment(log: Path, *, method_seconds: float = 0.0, rollback_failures: int = 0) -> dict[str, Any]:
    """Steady state (a probe), a method action (recording, optionally long), a rollback (recording, failing first)."""
    method = (call("record_and_sleep", path=str(log), label="method", seconds=method_seconds) if method_seconds
              else call("record", path=str(log), label="method"))
    return {
        "title": "recorded calls", "description": "counts how often each activity ran",
        "steady-state-hypothesis": {"title": "probe answers", "probes": [
            {"type": "probe", "name": "probe", "tolerance": "probe", "provider": call("record", path=str(log), label="probe")},
        ]},
        "method": [{"type": "action", "name": "inject", "provider": method}],
        "rollbacks": [{"type": "action", "name": "restore",
                       "provider": call("fail_first", path=str(log), label="rollback", failures=rollback_failures)}],
    }


async def start_chaos(client: Client, task_queue: str, request: ChaosRequest) -> WorkflowHandle[Any, ChaosOutcome]:
    return await client.start_workflow(CHAOS_WORKFLOW, request, id=f"chaos-test-{uuid.uuid4().hex[:8]}",
                                       task_queue=task_queue, result_type=ChaosOutcome)


def calls(log: Path, label: str) -> int:
    from tests.integration.chaos_providers import calls as count

    return count(str(log), label)


HISTORIES = Path(__file__).resolve().parents[1] / "histories"


async def maybe_record(handle: WorkflowHandle[Any, Any], name: str) -> None:
    """With PITSTOP_RECORD_HISTORIES=1, save the run's history for tests/replay/test_chaos_replay.py."""
    import os

    if os.environ.get("PITSTOP_RECORD_HISTORIES") != "1":
        return
    history = await handle.fetch_history()
    (HISTORIES / f"chaos-{name}.json").write_text(history.to_json())
