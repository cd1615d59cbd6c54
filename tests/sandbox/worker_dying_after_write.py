"""A regional worker that dies right after a step's write, before its result is reported (test only).

It serves `kubernetes.scale` and `kubernetes.set_image` on a region's task queue; on the first attempt of a
step named on the command line it runs the real activity (the PATCH reaches the API server) and then exits the
process with EXIT_CODE before returning, as a worker killed between the PATCH and the recorded result would.
Temporal then retries the step on another worker.

Usage: python -m tests.sandbox.worker_dying_after_write ADDRESS TASK_QUEUE REGION KUBECONFIG CONTEXT STEP_ID...
"""

from __future__ import annotations

import asyncio
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from pitstop.activities.kubernetes import KubernetesActivities
from pitstop.config import Settings
from pitstop.runbook.step_types import StepInvocation
from pitstop.steps.kubernetes import ScaleArgs, ScaleResult, SetImageArgs, SetImageResult
from pitstop.workers.clients import build_activity_clients

EXIT_CODE = 86


class DyingAfterWrite(KubernetesActivities):
    def __init__(self, region: str, kubeconfig: str, context: str, step_ids: set[str]) -> None:
        settings = Settings.model_validate({"kubernetes": {"regions": {region: {"kubeconfig": kubeconfig, "context": context}}}})
        super().__init__(build_activity_clients(settings, require_clusters=True))
        self.step_ids = step_ids

    def _die_after_first_attempt(self, invocation: StepInvocation[Any]) -> None:
        if invocation.step_id in self.step_ids and activity.info().attempt == 1:
            print(f"wrote {invocation.step_id}; exiting before the result is reported", flush=True)
            os._exit(EXIT_CODE)

    @activity.defn(name="kubernetes.scale")
    def scale(self, invocation: StepInvocation[ScaleArgs]) -> ScaleResult:
        result = super().scale(invocation)
        self._die_after_first_attempt(invocation)
        return result

    @activity.defn(name="kubernetes.set_image")
    def set_image(self, invocation: StepInvocation[SetImageArgs]) -> SetImageResult:
        result = super().set_image(invocation)
        self._die_after_first_attempt(invocation)
        return result


async def main(address: str, task_queue: str, region: str, kubeconfig: str, context: str, step_ids: list[str]) -> None:
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    dying = DyingAfterWrite(region, kubeconfig, context, set(step_ids))
    with ThreadPoolExecutor(max_workers=4) as executor:
        worker = Worker(
            client, task_queue=task_queue, activities=[dying.scale, dying.set_image], activity_executor=executor,
            sticky_queue_schedule_to_start_timeout=timedelta(seconds=1),
        )
        print("worker ready", flush=True)
        await worker.run()


if __name__ == "__main__":
    address, task_queue, region, kubeconfig, context, *step_ids = sys.argv[1:]
    asyncio.run(main(address, task_queue, region, kubeconfig, context, step_ids))
