"""The pitstop worker process: every workflow on the main task queue, regional activities per region.

Stateless and horizontally scalable: leases, dedup and approvals live in workflow state, never here.
Concurrency against each region's API server is bounded by that region's `max_concurrent_calls`
(one Worker per regional task queue), so a storm of runbooks cannot overload a cluster.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from pitstop.activities import ActivitySet, build_activities
from pitstop.config import Settings, regional_task_queue
from pitstop.workflows import ALL_WORKFLOWS

from .clients import build_activity_clients

log = logging.getLogger("pitstop.worker")

STICKY_QUEUE_TIMEOUT = timedelta(seconds=1)  # a killed worker's runs move on in ~2 s instead of ~10 s
GRACEFUL_SHUTDOWN = timedelta(seconds=10)


def metrics_runtime(port: int, host: str = "127.0.0.1") -> Runtime | None:
    """A Temporal runtime exporting the SDK's metrics for Prometheus on host:port (None if port is 0)."""
    if not port:
        return None
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"{host}:{port}")))


def build_workers(
    *,
    client: Client,
    settings: Settings,
    activity_set: ActivitySet,
    executor: ThreadPoolExecutor,
    workflows: Sequence[type] = ALL_WORKFLOWS,
) -> list[Worker]:
    base = settings.temporal.task_queue
    workers = [
        Worker(
            client,
            task_queue=base,
            workflows=list(workflows),
            activities=activity_set.shared,
            activity_executor=executor,
            max_concurrent_activities=settings.worker.max_concurrent_activities,
            max_concurrent_workflow_tasks=settings.worker.max_concurrent_workflow_tasks,
            sticky_queue_schedule_to_start_timeout=STICKY_QUEUE_TIMEOUT,
            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        )
    ]
    for region, activities in activity_set.regional.items():
        if not activities:
            continue
        cluster = settings.kubernetes.regions.get(region)
        limit = cluster.max_concurrent_calls if cluster else 8
        workers.append(
            Worker(
                client,
                task_queue=regional_task_queue(base, region),
                activities=activities,
                activity_executor=executor,
                max_concurrent_activities=limit,
                graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
            )
        )
    return workers


async def run_worker(settings: Settings, *, client: Client, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set or SIGINT/SIGTERM arrives, then shut down gracefully."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    activity_set = build_activities(build_activity_clients(settings, temporal=client))
    with ThreadPoolExecutor(max_workers=max(8, settings.worker.max_concurrent_activities)) as executor:
        workers = build_workers(client=client, settings=settings, activity_set=activity_set, executor=executor)
        queues = ", ".join(w.task_queue for w in workers)
        log.info("worker ready: task queues [%s], %d workflows", queues, len(ALL_WORKFLOWS))
        print(f"pitstop worker ready: task queues [{queues}]", flush=True)
        runs = [asyncio.create_task(w.run()) for w in workers]
        await stop.wait()
        await asyncio.gather(*(w.shutdown() for w in workers))
        await asyncio.gather(*runs, return_exceptions=True)
    print("pitstop worker stopped", flush=True)
