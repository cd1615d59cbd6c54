"""Scale-out figures on the production topology: a real Temporal server (built from Go modules) on PostgreSQL and
1, then 2, `pitstop worker` processes (`sandbox.production_topology`). Each round starts N runbooks of 10 steps at
once (`log` steps in a chain) and waits for all of them; printed side by side per worker count: runs/s, step
latency p50/p99 (activity scheduled -> completed, from the histories) and CPU-seconds per run of the workers, the
Temporal server and PostgreSQL (from /proc: every process of each). Median of the rounds. 2 cores cannot show more
workers scaling throughput; the per-run cost is what extrapolates. The load average is printed with the figures.

Usage: .venv/bin/python -m bench.scale_out [--runs 200] [--rounds 3] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter

from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest
from pitstop.sandbox.production_topology import ProductionTopology

STEPS = 10
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def ten_step_runbook(directory: Path) -> None:
    steps = [f"  - {{id: s{i}, uses: log, {'needs: s' + str(i - 1) + ', ' if i else ''}with: {{message: step {i}}}}}"
             for i in range(STEPS)]
    (directory / "ten-steps.yaml").write_text("name: ten-steps\ndescription: ten log steps in a chain\nsteps:\n"
                                              + "\n".join(steps) + "\n")


def process_tree(root_pids: list[int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, stack = [], list(root_pids)
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def cpu_seconds(root_pids: list[int]) -> float:
    total = 0
    for pid in process_tree(root_pids):
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, IndexError, ValueError):
            continue
    return total / CLOCK_TICKS


def step_latencies(history: WorkflowHistory) -> list[float]:
    scheduled: dict[int, float] = {}
    latencies = []
    for event in history.events:
        kind = event.WhichOneof("attributes")
        at = event.event_time.ToDatetime().timestamp()
        if kind == "activity_task_scheduled_event_attributes":
            scheduled[event.event_id] = at
        elif kind == "activity_task_completed_event_attributes":
            started = scheduled.get(event.activity_task_completed_event_attributes.scheduled_event_id)
            if started is not None:
                latencies.append(at - started)
    return latencies


async def one_round(client: Client, topology: ProductionTopology, runs: int) -> dict[str, float]:
    pids = {"workers": [p.process.pid for p in topology.worker_processes if p.process],
            "server": [topology.temporal.process.pid] if topology.temporal.process else [],
            "postgres": [topology.postgres.process.pid] if topology.postgres.process else []}
    before = {name: cpu_seconds(group) for name, group in pids.items()}
    started = time.monotonic()
    ids = [f"ten-{uuid.uuid4().hex[:10]}" for _ in range(runs)]
    handles = await asyncio.gather(*(client.start_workflow(
        RUNBOOK_WORKFLOW, RunbookRequest(runbook="ten-steps", trigger="test", started_by="bench"), id=workflow_id,
        task_queue=topology.task_queue, result_type=RunbookOutcome) for workflow_id in ids))
    outcomes = await asyncio.gather(*(handle.result() for handle in handles))
    elapsed = time.monotonic() - started
    assert all(o.status == "succeeded" for o in outcomes), [o.error for o in outcomes if o.status != "succeeded"][:3]
    after = {name: cpu_seconds(group) for name, group in pids.items()}
    latencies = sorted(x for h in await asyncio.gather(*(handle.fetch_history() for handle in handles))
                       for x in step_latencies(h))
    figures = {"runs_per_second": runs / elapsed, "step_p50_ms": 1000 * latencies[len(latencies) // 2],
               "step_p99_ms": 1000 * latencies[int(len(latencies) * 0.99)]}
    figures |= {f"cpu_s_per_run_{name}": (after[name] - before[name]) / runs for name in pids}
    return figures


async def measure(workers: int, runs: int, rounds: int) -> dict[str, float]:
    runbooks = Path(tempfile.mkdtemp(prefix="scale-out-runbooks-"))
    ten_step_runbook(runbooks)
    topology = ProductionTopology(workers=workers, webhooks=0, task_queue=f"scale-{uuid.uuid4().hex[:6]}",
                                  extra_env={"PITSTOP_RUNBOOKS_DIR": str(runbooks)})
    await asyncio.to_thread(topology.start)  # sync: it runs its own event loop for the namespace setup
    try:
        client = await Client.connect(topology.temporal.address, data_converter=pydantic_data_converter)
        await one_round(client, topology, min(runs, 20))  # warm-up: caches, connections
        results = [await one_round(client, topology, runs) for _ in range(rounds)]
    finally:
        topology.stop(remove_state=True)
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    print(f"load average at start: {os.getloadavg()}", flush=True)
    figures = {n: asyncio.run(measure(n, args.runs, args.rounds)) for n in counts}
    print(f"{args.runs} concurrent runbooks of {STEPS} steps, median of {args.rounds} rounds; Temporal server on PostgreSQL")
    print(f"{'':28}" + "".join(f"{f'{n} worker(s)':>14}" for n in counts))
    for key in figures[counts[0]]:
        print(f"{key:28}" + "".join(f"{figures[n][key]:>14.3f}" for n in counts))
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
