"""Record the runbook engine's histories for replay tests: `python -m tests.replay.record_runbook_histories`.

Runs the shipped `hello` runbook and the engine's test runbooks (parallel + condition + fan-out, saga failure
with compensations, abort, approval, child runbook, lease wait, approval escalation with a notification,
a run that continues-as-new, a for_each split across runs, a scheduled run skipped because its target is
leased, one skipped because its error budget cannot be measured) on a fresh dev server and writes
tests/histories/runbook-*.json (and lease-*.json).
Re-record after an intentional, patched workflow change. Give history names as arguments to write only those
(e.g. new scenarios), leaving the recorded ones as they are:
`python -m tests.replay.record_runbook_histories runbook-escalation runbook-continued-first runbook-continued`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid
from pathlib import Path

from temporalio.client import Client, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter

from pitstop.activities.delivery import ReleaseAnalysisActivities
from pitstop.config import Settings
from pitstop.delivery.budget import ErrorBudgetCheck
from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest
from pitstop.runbook.run_state import ApprovalDecision, ControlRequest
from tests.integration.runbook_harness import engine, start, step_state, wait_until
from pitstop.workers.clients import build_activity_clients
from pitstop.workers.devserver import DevServer, DevServerPorts
from pitstop.workers.run_history import fetch_chain

HISTORIES = Path(__file__).resolve().parents[1] / "histories"


async def record(client: Client, queue: str) -> dict[str, str | tuple[str, str]]:
    ids: dict[str, str | tuple[str, str]] = {}
    unreachable = Settings(prometheus={"url": "http://127.0.0.1:9"})  # the discard port: connection refused
    measure = ReleaseAnalysisActivities(build_activity_clients(unreachable)).measure
    async with engine(client, queue, extra_activities=[measure]):
        for name, runbook, inputs in [("hello", "hello", {"name": "replay"}), ("parallel", "parallel", {}),
                                      ("child", "parent", {}), ("retry-success", "saga", {"fail_attempts": 1})]:
            handle = await start(client, queue, runbook, f"runbook-{name}", **inputs)
            await handle.result()
            ids[f"runbook-{name}"] = handle.id
        failing = await start(client, queue, "saga", "runbook-saga-failure")
        try:
            await failing.result()
        except WorkflowFailureError:
            pass
        ids["runbook-saga-failure"] = failing.id
        aborted = await start(client, queue, "long", "runbook-abort", seconds=30, service="replay-abort")
        await wait_until(aborted, lambda s: step_state(s, "work") == "running")
        await aborted.execute_update("pause", ControlRequest(identity="ops"))
        await aborted.execute_update("abort", ControlRequest(identity="ops", reason="replay recording"))
        await aborted.result()
        ids["runbook-abort"] = aborted.id
        gated = await start(client, queue, "gated", "runbook-approval")
        await wait_until(gated, lambda s: s.phase.value == "waiting_for_approval")
        await gated.execute_update("approve", ApprovalDecision(step="ok", identity="alice"))
        await gated.result()
        ids["runbook-approval"] = gated.id
        first = await start(client, queue, "long", seconds=1, service="replay-lease")
        await wait_until(first, lambda s: step_state(s, "work") == "running")
        second = await start(client, queue, "long", "runbook-lease-waiter", seconds=0.1, service="replay-lease")
        await first.result()
        await second.result()
        ids["runbook-lease-waiter"] = second.id
        ids["lease-target"] = "lease/eu-central/shop/replay-lease"
        # escalation: the notification env var is unset here, so the notify activity fails (non-retryable)
        os.environ.pop("PITSTOP_TEST_ESCALATION_URL", None)
        escalated = await start(client, queue, "escalate", "runbook-escalation", timeout=0.5)
        await wait_until(escalated, lambda s: bool(s.approvals) and s.approvals[0].notified != "")
        await escalated.execute_update("approve", ApprovalDecision(step="ok", identity="carol"))
        await wait_until(escalated, lambda s: bool(s.approvals) and s.approvals[0].key == "chat" and s.approvals[0].notified != "")
        await escalated.execute_update("approve", ApprovalDecision(step="chat", identity="dave"))
        await escalated.result()
        ids["runbook-escalation"] = escalated.id
        continued = await start(client, queue, "linear", "runbook-continued", history_limit=200)
        await continued.result()
        ids["runbook-continued-first"] = (continued.id, continued.first_execution_run_id or "")
        ids["runbook-continued"] = continued.id
        # one for_each split across runs (first run splits, a middle run resumes and splits, the last completes).
        # How many events an item costs depends on how many completions share a workflow task (more under load:
        # 40 items at limit 80 then made only 2 runs), so the limit is the lowest allowed: 3 runs or more either way.
        fan = await start(client, queue, "fanout", "runbook-fanout-split", history_limit=50,
                          items=[round(0.01 + i / 1000, 3) for i in range(40)])
        await fan.result()
        histories = await fetch_chain(client, fan.id)
        runs = [fan.first_execution_run_id or ""] + [
            h.events[-1].workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            for h in histories[:-1]
        ]
        assert len(runs) >= 3, f"the fan-out split into {len(runs)} run(s) only"
        print(f"the fan-out split into {len(runs)} runs", flush=True)
        for name, run_id in (("first", runs[0]), ("second", runs[1]), ("last", runs[-1])):
            ids[f"runbook-fanout-split-{name}"] = (fan.id, run_id)
        # a run started by a schedule finds its target leased: it ends skipped (workflow.patched) with the reason
        holder = await start(client, queue, "long", seconds=30, service="replay-scheduled")
        await wait_until(holder, lambda s: step_state(s, "work") == "running")
        scheduled = await client.start_workflow(
            RUNBOOK_WORKFLOW, RunbookRequest(runbook="long", inputs={"seconds": 0.1, "service": "replay-scheduled"},
                                             trigger="schedule", started_by="schedule replay"),
            id="runbook-scheduled-skip", task_queue=queue, result_type=RunbookOutcome,
        )
        assert (await scheduled.result()).status == "skipped"
        ids["runbook-scheduled-skip"] = scheduled.id
        await holder.execute_update("abort", ControlRequest(identity="ops", reason="replay recording"))
        await holder.result()
        # a run started by a schedule with an error budget it cannot measure (no Prometheus here): skipped, reason
        budgeted = await client.start_workflow(
            RUNBOOK_WORKFLOW, RunbookRequest(runbook="long", inputs={"seconds": 0.1, "service": "replay-budget"},
                                             trigger="schedule", started_by="schedule replay",
                                             error_budget=ErrorBudgetCheck(window="1h")),
            id="runbook-scheduled-budget-skip", task_queue=queue, result_type=RunbookOutcome,
        )
        assert (await budgeted.result()).status == "skipped"
        ids["runbook-scheduled-budget-skip"] = budgeted.id
        await asyncio.sleep(0.5)
    return ids


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = DevServer(state_dir=Path(tmp), ports=DevServerPorts.free())
        server.start()
        try:
            client = await Client.connect(server.address, data_converter=pydantic_data_converter)
            ids = await record(client, f"replay-{uuid.uuid4().hex[:6]}")
            only = set(sys.argv[1:])
            for name, run in ids.items():
                if only and name not in only:
                    continue
                workflow_id, run_id = run if isinstance(run, tuple) else (run, None)
                history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
                (HISTORIES / f"{name}.json").write_text(history.to_json())
                print(f"wrote tests/histories/{name}.json ({len(history.events)} events)")
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
