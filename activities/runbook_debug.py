"""Activities of the engine's own step types: `EngineSteps` (`log`, `fail`: stop a run whose precondition does
not hold) and the test-only `DebugSteps` (`debug.fail`, `debug.wait`, `debug.change`).

No external system: the debug ones exist so the engine can be tested and benchmarked end to end for real. They
are registered only on test workers (`worker.enable_debug_steps`), and `debug.wait`'s `record_to` may only append
to a file under the worker's `worker.debug_record_dir`.
"""

from __future__ import annotations

import time
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from pitstop.runbook.native_steps import (
    ChangeArgs, ChangeResult, FailArgs, FailResult, LogArgs, LogResult, StopArgs, StopResult, WaitArgs, WaitResult,
)
from pitstop.runbook.step_types import StepInvocation


class EngineSteps:
    @activity.defn(name="runbook.log")
    async def log(self, call: StepInvocation[LogArgs]) -> LogResult:
        return LogResult(message=call.args.message, summary=call.args.message)

    @activity.defn(name="runbook.fail")
    async def stop(self, call: StepInvocation[StopArgs]) -> StopResult:
        raise ApplicationError(call.args.message, type="RunbookStopped", non_retryable=True)

    def activities(self) -> list:
        return [self.log, self.stop]


def confined_record_file(record_to: str, record_dir: Path) -> Path:
    """`record_to` as a path inside `record_dir` (symlinks resolved); anything else is a domain error."""
    root = record_dir.resolve()
    target = Path(record_to).expanduser().resolve()
    if not target.is_relative_to(root):
        raise ApplicationError(
            f"record_to {record_to!r} is outside the worker's debug record directory {root}",
            type="RecordToRefused", non_retryable=True,
        )
    return target


class DebugSteps:
    """The test-only steps; `record_dir` confines `debug.wait`'s `record_to`."""

    def __init__(self, *, record_dir: Path) -> None:
        self.record_dir = record_dir

    @activity.defn(name="runbook.debug_fail")
    async def fail(self, call: StepInvocation[FailArgs]) -> FailResult:
        attempt = activity.info().attempt
        if call.args.fail_attempts < 0 or attempt <= call.args.fail_attempts:
            raise ApplicationError(
                f"{call.args.message} (attempt {attempt})", type="InjectedFailure", non_retryable=call.args.non_retryable
            )
        return FailResult(attempts=attempt, summary=f"succeeded on attempt {attempt}")

    @activity.defn(name="runbook.debug_wait")
    def wait(self, call: StepInvocation[WaitArgs]) -> WaitResult:
        """Sync (thread pool) on purpose: works while heartbeating, like a real long call."""
        record = confined_record_file(call.args.record_to, self.record_dir) if call.args.record_to else None
        deadline = time.monotonic() + call.args.seconds
        while time.monotonic() < deadline:
            activity.heartbeat()
            if activity.is_cancelled():
                raise ApplicationError("cancelled", type="Cancelled")
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        attempt = activity.info().attempt
        if record is not None:
            with record.open("a") as out:
                out.write(f"{call.run_id} {call.step_id} attempt={attempt}\n")
        return WaitResult(seconds=call.args.seconds, attempt=attempt, summary=f"waited {call.args.seconds}s")

    @activity.defn(name="runbook.debug_change")
    async def change(self, call: StepInvocation[ChangeArgs]) -> ChangeResult:
        if call.dry_run:
            return ChangeResult(changed=False, would_change=call.args.what, summary=f"would {call.args.what}")
        return ChangeResult(changed=True, summary=f"did {call.args.what}")

    def activities(self) -> list:
        return [self.fail, self.wait, self.change]
