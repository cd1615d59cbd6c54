"""Interpreter overhead: a 50-step linear runbook vs a hand-written workflow calling the same 50 no-op
activities (same server, same worker, same run), plus a 100-wide fan-out. Prints times and the ratio.
Once: a 2,000-item for_each split across continue-as-new runs (history_limit 2,000): runs and seconds.

Also prints, for both workflows, the workflow-task time per step two ways: from the recorded histories
(WorkflowTaskStarted -> WorkflowTaskCompleted, what the server sees: worker time plus the round trip) and by
replaying one recorded history in-process (the worker's CPU alone, no server). The load average is printed
at the start and the end: on a busy machine the wall-clock ratio is noise, compare it only beside them.

On the dev server's defaults a sequential workflow waits ~35-40 ms per step for the server to dispatch its
next workflow task (history.transferProcessorMaxPollRPS = 20 polls/s): that floor, not the worker, sets the
wall time of both workflows. Right after a burst of tasks (the fan-out) the server dispatches faster for a
while, so the two linear workflows alternate which runs first and the fan-outs run after them.
`--fast-dispatch` raises the poll rate so the wall ratio shows the worker's share.

Usage: .venv/bin/python bench/runbook_overhead.py [--rounds 5] [--fast-dispatch]
Starts its own Temporal dev server (free ports, temporary state) and an in-process worker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, Worker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pitstop.activities.runbook_catalog import RunbookCatalog  # noqa: E402
from pitstop.activities.runbook_debug import DebugSteps, EngineSteps  # noqa: E402
from handwritten import HandWritten50  # noqa: E402  (bench/handwritten.py)
from pitstop.runbook.reach import AuthorReach  # noqa: E402
from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest  # noqa: E402
from pitstop.runbook.run_state import RunStatus  # noqa: E402
from pitstop.workers.devserver import DevServer, DevServerPorts  # noqa: E402
from pitstop.workflows import ALL_WORKFLOWS  # noqa: E402

STEPS = 50
FAN_OUT = 100
BIG_FAN_OUT, BIG_PARALLELISM, BIG_HISTORY_LIMIT = 2000, 100, 2000
FAST_DISPATCH = ("history.transferProcessorMaxPollRPS=1000", "history.transferProcessorMaxPollHostRPS=10000")
REPLAYS = 15


def write_runbooks(root: Path) -> None:
    lines = ["name: linear50", "steps:"]
    for i in range(STEPS):
        needs = f", needs: s{i - 1}" if i else ""
        lines.append(f"  - {{id: s{i}, uses: log{needs}, with: {{message: 'step {i}'}}}}")
    (root / "linear50.yaml").write_text("\n".join(lines) + "\n")
    (root / "fanout100.yaml").write_text(
        "name: fanout100\ninputs:\n  items: {type: list}\nsteps:\n"
        f"  - id: fan\n    uses: log\n    for_each: {{items: '${{{{ inputs.items }}}}', parallelism: {FAN_OUT}}}\n"
        "    with: {message: 'item ${{ item }}'}\n"
    )
    (root / "fanout2000.yaml").write_text(
        "name: fanout2000\ninputs:\n  items: {type: list}\nsteps:\n"
        f"  - id: fan\n    uses: log\n    for_each: {{items: '${{{{ inputs.items }}}}', parallelism: {BIG_PARALLELISM}}}\n"
        "    with: {message: 'item ${{ item }}'}\n"
    )


async def timed(coro_factory) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    await coro_factory()
    return time.perf_counter() - started


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg()) + f" ({os.cpu_count()} cores)"


class BenchServer(DevServer):
    """The embedded dev server, optionally with extra dynamic config (`--fast-dispatch`)."""

    dynamic_config: tuple[str, ...] = ()

    def command(self) -> list[str]:
        return super().command() + [arg for kv in self.dynamic_config for arg in ("--dynamic-config-value", kv)]


async def bench(rounds: int, fast_dispatch: bool) -> None:
    print(f"load average at start: {load_average()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "runbooks").mkdir()
        write_runbooks(root / "runbooks")
        server = BenchServer(state_dir=root / "temporal", ports=DevServerPorts.free())
        if fast_dispatch:
            server.dynamic_config = FAST_DISPATCH
            print(f"server: {' '.join(FAST_DISPATCH)}")
        server.start()
        try:
            client = await Client.connect(server.address, data_converter=pydantic_data_converter)
            queue = f"bench-{uuid.uuid4().hex[:6]}"
            reach = AuthorReach(env_allowlist=[], allowed_hosts=[], debug_steps=True)  # a test worker: debug steps
            activities = [*RunbookCatalog(root / "runbooks", reach=reach).activities(), *EngineSteps().activities(),
                          *DebugSteps(record_dir=root).activities()]
            with ThreadPoolExecutor(max_workers=8) as executor:
                async with Worker(client, task_queue=queue, workflows=[*ALL_WORKFLOWS, HandWritten50],
                                  activities=activities, activity_executor=executor):
                    await run_rounds(client, queue, rounds)
        finally:
            server.stop()
    print(f"load average at end: {load_average()}")


async def run_rounds(client: Client, queue: str, rounds: int) -> None:
    ids: dict[str, list[str]] = {"HandWritten50": [], "linear50": []}

    async def runbook(name: str, inputs: dict | None = None) -> None:  # type: ignore[type-arg]
        workflow_id = f"{name}-{uuid.uuid4().hex[:8]}"
        ids.setdefault(name, []).append(workflow_id)
        outcome = await client.execute_workflow(
            RUNBOOK_WORKFLOW, RunbookRequest(runbook=name, inputs=inputs or {}, trigger="bench"),
            id=workflow_id, task_queue=queue, result_type=RunbookOutcome,
        )
        if outcome.status != "succeeded":
            raise SystemExit(f"{name} did not succeed: {outcome}")

    async def hand() -> None:
        workflow_id = f"hand-{uuid.uuid4().hex[:8]}"
        ids["HandWritten50"].append(workflow_id)
        await client.execute_workflow("HandWritten50", STEPS, id=workflow_id, task_queue=queue)

    await runbook("linear50")  # warm-up (imports, sandbox, caches)
    await hand()
    await print_history_sizes(client)
    for warm_up in ids.values():  # measured runs only
        warm_up.clear()
    interp: list[float] = []
    baseline: list[float] = []
    for index in range(rounds):  # interleaved so both see the same server state, each first in every other round
        pair = [(baseline, hand), (interp, lambda: runbook("linear50"))]
        for times, run in pair if index % 2 == 0 else reversed(pair):
            times.append(await timed(run))
    # the fan-outs after the pairs: the server dispatches faster for a while after a burst of tasks, which
    # favoured whichever workflow ran next (it was always the hand-written one: ratios of 1.2-1.5 came from that)
    fan = [await timed(lambda: runbook("fanout100", {"items": list(range(FAN_OUT))})) for _ in range(rounds)]
    b, i, f = statistics.median(baseline), statistics.median(interp), statistics.median(fan)
    print(f"rounds: {rounds} (median of each)")
    print(f"hand-written workflow, {STEPS} no-op activities: {b:.3f}s")
    print(f"runbook interpreter, {STEPS}-step linear runbook: {i:.3f}s")
    print(f"ratio interpreter/hand-written: {i / b:.3f} (target <= 1.10)")
    print(f"runbook interpreter, {FAN_OUT}-wide fan-out (parallelism {FAN_OUT}): {f:.3f}s")
    await print_task_times(client, ids["HandWritten50"], ids["linear50"])
    await big_fan_out(client, queue)


async def print_task_times(client: Client, hand_ids: list[str], runbook_ids: list[str]) -> None:
    """Workflow-task time per step of both workflows: server-side (history) and worker CPU (replay)."""
    runs = {"hand-written": hand_ids, "interpreter": runbook_ids}
    histories = {kind: [await client.get_workflow_handle(wid).fetch_history() for wid in ids] for kind, ids in runs.items()}
    replayed = await replay_seconds({kind: recorded[0] for kind, recorded in histories.items()})
    figures = {}
    for kind, kind_histories in histories.items():
        tasks = len(task_durations(kind_histories[0]))
        per_task = statistics.median(statistics.mean(task_durations(h)) for h in kind_histories)
        figures[kind] = (per_task, replayed[kind] / tasks * 1000)
        print(f"{kind}: workflow task {per_task:.2f}ms (history, started->completed, median of runs), "
              f"{figures[kind][1]:.2f}ms worker CPU (in-process replay, {tasks} tasks per run)")
    (hand_history, hand_cpu), (interp_history, interp_cpu) = figures["hand-written"], figures["interpreter"]
    print(f"ratio of workflow-task time per step interpreter/hand-written: {interp_history / hand_history:.3f} "
          f"(history), {interp_cpu / hand_cpu:.3f} (replay CPU); extra per step: {interp_history - hand_history:.2f}ms "
          f"(history), {interp_cpu - hand_cpu:.2f}ms (replay CPU)")


def task_durations(history: WorkflowHistory) -> list[float]:
    """Milliseconds from each WorkflowTaskStarted to its WorkflowTaskCompleted."""
    durations, started = [], None
    for event in history.events:
        if event.HasField("workflow_task_started_event_attributes"):
            started = event.event_time.ToNanoseconds()
        elif event.HasField("workflow_task_completed_event_attributes") and started is not None:
            durations.append((event.event_time.ToNanoseconds() - started) / 1e6)
            started = None
    return durations


async def replay_seconds(histories: dict[str, WorkflowHistory]) -> dict[str, float]:
    """Fastest of a few in-process replays of one recorded run of each (interleaved, so both see the same
    machine): the worker's CPU for all the run's workflow tasks."""
    replayer = Replayer(workflows=[*ALL_WORKFLOWS, HandWritten50], data_converter=pydantic_data_converter)
    times: dict[str, list[float]] = {kind: [] for kind in histories}
    for attempt in range(REPLAYS + 1):  # the first is a warm-up
        for kind, history in histories.items():
            started = time.perf_counter()
            await replayer.replay_workflow(history)
            if attempt:
                times[kind].append(time.perf_counter() - started)
    return {kind: min(seconds) for kind, seconds in times.items()}


async def big_fan_out(client: Client, queue: str) -> None:
    """One for_each too long for one run's history limit: split across continue-as-new runs."""
    request = RunbookRequest(runbook="fanout2000", inputs={"items": list(range(BIG_FAN_OUT))}, trigger="bench",
                             history_limit=BIG_HISTORY_LIMIT)
    started = time.perf_counter()
    handle = await client.start_workflow(RUNBOOK_WORKFLOW, request, id=f"fanout2000-{uuid.uuid4().hex[:8]}",
                                         task_queue=queue, result_type=RunbookOutcome)
    outcome = await handle.result()
    seconds = time.perf_counter() - started
    outputs = outcome.outputs.get("fan")
    if outcome.status != "succeeded" or not isinstance(outputs, list) or len(outputs) != BIG_FAN_OUT:
        raise SystemExit(f"fanout2000 did not succeed with {BIG_FAN_OUT} outputs: {outcome.status} {outcome.error}")
    runs = (await handle.query("status", result_type=RunStatus)).run_number
    print(f"runbook interpreter, {BIG_FAN_OUT}-item for_each (parallelism {BIG_PARALLELISM}, history_limit "
          f"{BIG_HISTORY_LIMIT}): {runs} runs (continue-as-new), {seconds:.3f}s")


async def print_history_sizes(client: Client) -> None:
    """Events per run: the interpreter should add only a constant (load activity, search attributes)."""
    sizes = {}
    async for execution in client.list_workflows("WorkflowType='Runbook' OR WorkflowType='HandWritten50'"):
        history = await client.get_workflow_handle(execution.id).fetch_history()
        tasks = sum(1 for e in history.events if e.HasField("workflow_task_completed_event_attributes"))
        sizes[execution.workflow_type] = f"{len(history.events)} events, {tasks} workflow tasks; {_gaps(history)}"
    for kind, size in sorted(sizes.items()):
        print(f"history of one {kind} run: {size}")


def _gaps(history) -> str:  # type: ignore[no-untyped-def]
    """Mean milliseconds between event kinds: where a step's time goes (server dispatch vs worker)."""
    times: dict[str, list[float]] = {}
    previous = None
    for event in history.events:
        kind = (event.WhichOneof("attributes") or "").removesuffix("_event_attributes")
        at = event.event_time.ToMilliseconds()
        if previous is not None:
            times.setdefault(f"{previous[0]}->{kind}", []).append(at - previous[1])
        previous = (kind, at)
    wanted = ("workflow_task_scheduled->workflow_task_started", "workflow_task_started->workflow_task_completed",
              "activity_task_scheduled->activity_task_started", "activity_task_started->activity_task_completed")
    return ", ".join(f"{k.split('->')[0].replace('_task', '').replace('_scheduled','')}.{k.split('->')[1].split('_')[-1]}="
                     f"{statistics.mean(times[k]):.1f}ms" for k in wanted if k in times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fast-dispatch", action="store_true",
                        help="raise the dev server's transfer-queue poll rate (see above)")
    args = parser.parse_args()
    asyncio.run(bench(args.rounds, args.fast_dispatch))


if __name__ == "__main__":
    main()
