"""Chaos overhead: the same Chaos Toolkit experiment through pitstop (a durable `ChaosExperiment` run: one child
process per phase, each rollback its own activity) and through `chaos run --journal-path` (one process).
Prints the median wall time of each over `--rounds`, the ratio, and the load average at start and end: on a busy
machine compare the ratio only beside the load average.

The experiment: a steady-state hypothesis with one probe, a method of `--activities` actions and one rollback, all
`os.path.exists` python providers (no cluster needed), so the figures are the engines' own cost.

Usage: .venv/bin/python bench/chaos_overhead.py [--rounds 5] [--activities 3]
Starts its own Temporal dev server (free ports, temporary state) and an in-process worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.client import Client  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from pitstop.activities import activity_methods  # noqa: E402
from pitstop.activities.chaos import ChaosActivities  # noqa: E402
from pitstop.activities.clients import ActivityClients  # noqa: E402
from pitstop.chaos.model import CHAOS_WORKFLOW, ChaosOutcome, ChaosRequest  # noqa: E402
from pitstop.config import ChaosSettings, SecuritySettings, Settings, regional_task_queue  # noqa: E402
from pitstop.workers.devserver import DevServer, DevServerPorts  # noqa: E402
from pitstop.workflows import ALL_WORKFLOWS  # noqa: E402

REGION = "bench"


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg()) + f" ({os.cpu_count()} cores)"


def experiment(activities: int) -> dict[str, Any]:
    def exists(name: str, kind: str) -> dict[str, Any]:
        return {"type": kind, "name": name, "provider": {"type": "python", "module": "os.path", "func": "exists",
                                                         "arguments": {"path": "/"}}}

    return {
        "title": "overhead", "description": "engine cost only",
        "steady-state-hypothesis": {"title": "root exists", "probes": [exists("root", "probe") | {"tolerance": True}]},
        "method": [exists(f"action-{i}", "action") for i in range(activities)],
        "rollbacks": [exists("rollback", "action")],
    }


def chaos_run(path: Path, work: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "chaos"), "run", str(path), "--journal-path",
                           str(work / "journal.json")], cwd=work, capture_output=True, check=False, timeout=300)
    elapsed = time.perf_counter() - started
    if json.loads((work / "journal.json").read_text())["status"] != "completed":
        raise SystemExit(f"chaos run did not complete: {done.stderr.decode()[-2000:]}")
    return elapsed


async def pitstop_run(client: Client, queue: str, exp: dict[str, Any]) -> float:
    started = time.perf_counter()
    outcome = await client.execute_workflow(
        CHAOS_WORKFLOW, ChaosRequest(experiment=exp, region=REGION), id=f"bench-{uuid.uuid4().hex[:8]}",
        task_queue=queue, result_type=ChaosOutcome)
    elapsed = time.perf_counter() - started
    if not outcome.ok:
        raise SystemExit(f"pitstop run did not complete: {outcome.summary} {outcome.reason}")
    return elapsed


async def bench(rounds: int, activities: int) -> None:
    print(f"load average at start: {load_average()}")
    exp = experiment(activities)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = root / "experiment.json"
        path.write_text(json.dumps(exp))
        server = DevServer(state_dir=root / "temporal", ports=DevServerPorts.free())
        server.start()
        try:
            client = await Client.connect(server.address, data_converter=pydantic_data_converter)
            queue = f"bench-{uuid.uuid4().hex[:6]}"
            settings = Settings(state_dir=root / "state", security=SecuritySettings(chaos_provider_modules=["os.path"]),
                                chaos=ChaosSettings(heartbeat_seconds=1.0))
            chaos = activity_methods(ChaosActivities(ActivityClients(settings=settings), REGION))
            with ThreadPoolExecutor(max_workers=4) as executor:
                async with Worker(client, task_queue=queue, workflows=ALL_WORKFLOWS, activity_executor=executor), \
                        Worker(client, task_queue=regional_task_queue(queue, REGION), activities=chaos):
                    await pitstop_run(client, queue, exp)  # warm-up (imports, sticky cache)
                    times: dict[str, list[float]] = {"pitstop": [], "chaos run": []}
                    for _ in range(rounds):
                        times["chaos run"].append(await asyncio.to_thread(chaos_run, path, root))
                        times["pitstop"].append(await pitstop_run(client, queue, exp))
        finally:
            server.stop()
    ours, theirs = statistics.median(times["pitstop"]), statistics.median(times["chaos run"])
    print(f"experiment: 1 probe before and after, {activities} action(s), 1 rollback; {rounds} round(s)")
    print(f"  chaos run --journal-path  median {theirs:6.2f}s  (min {min(times['chaos run']):.2f}, max {max(times['chaos run']):.2f})")
    print(f"  pitstop ChaosExperiment   median {ours:6.2f}s  (min {min(times['pitstop']):.2f}, max {max(times['pitstop']):.2f})")
    print(f"  ratio pitstop / chaos run: {ours / theirs:.2f}")
    print(f"load average at end: {load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--activities", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(bench(args.rounds, args.activities))


if __name__ == "__main__":
    main()
