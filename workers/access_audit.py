"""The worker's side of the access policy: load it, install it for the update validators, record refusals.

`install_policy(settings, client)` loads `security.policy_file` (a `PolicyError` names the file, rule and
field and stops the worker), installs it in `pitstop.policy.guard` with a denial sink, and returns the
`DenialRecorder` whose `run()` the worker runs beside its Temporal workers. A validator that refuses an update
hands the `AccessDenial` to the sink (no I/O in workflow code: a thread-safe hand-off to this event loop); the
recorder logs it and signals `access_denied` to the run, so the refusal is an event in the run's history
(Temporal records nothing for a rejected update).
"""

from __future__ import annotations

import asyncio
import logging

from temporalio.client import Client

from pitstop.config import Settings
from pitstop.policy import Policy, load_policy
from pitstop.policy import guard
from pitstop.policy.guard import ACCESS_DENIED_SIGNAL, AccessDenial

log = logging.getLogger("pitstop.access")

MAX_PENDING_DENIALS = 1000  # refusals waiting to be signalled; beyond that they are only logged


class DenialRecorder:
    """Signals each refusal to its run. Create it inside the worker's event loop."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[AccessDenial] = asyncio.Queue(MAX_PENDING_DENIALS)

    def sink(self, denial: AccessDenial) -> None:
        """Called from a workflow thread by the validator (which logs the refusal): signal from the worker's loop."""
        self._loop.call_soon_threadsafe(self._enqueue, denial)

    def _enqueue(self, denial: AccessDenial) -> None:
        try:
            self._queue.put_nowait(denial)
        except asyncio.QueueFull:
            log.error("access denial not recorded in the history of %s (too many pending): %s",
                      denial.workflow_id, denial.reason)

    async def run(self) -> None:
        while True:
            denial = await self._queue.get()
            try:
                await self._client.get_workflow_handle(denial.workflow_id).signal(ACCESS_DENIED_SIGNAL, denial)
            except Exception as exc:  # noqa: BLE001 - the run may have ended meanwhile; the log line stays
                log.error("access denial not recorded in the history of %s: %s", denial.workflow_id, exc)


def install_policy(settings: Settings, client: Client) -> DenialRecorder | None:
    """Install `security.policy_file` for the validators; None (and no policy) when it is not configured."""
    path = settings.security.policy_file
    if path is None:
        guard.install(None)
        return None
    policy: Policy = load_policy(path)
    recorder = DenialRecorder(client)
    guard.install(policy, denial_sink=recorder.sink)
    log.info("access policy %s: %d rules, %d groups", path, len(policy.rules), len(policy.groups))
    return recorder
