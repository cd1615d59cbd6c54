"""A worker process for the engine's tests (killed with SIGKILL by the crash test).

Usage: python -m tests.integration.engine_worker ADDRESS TASK_QUEUE
"""

from __future__ import annotations

import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from tests.integration.runbook_harness import engine_activities
from pitstop.workflows import ALL_WORKFLOWS


async def main(address: str, task_queue: str) -> None:
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    with ThreadPoolExecutor(max_workers=8) as executor:
        worker = Worker(
            client, task_queue=task_queue, workflows=ALL_WORKFLOWS, activities=engine_activities(client),
            activity_executor=executor, sticky_queue_schedule_to_start_timeout=timedelta(seconds=1),
        )
        print("worker ready", flush=True)
        await worker.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
