"""The per-target lease: one workflow per (cluster, namespace, service), id `lease/<cluster>/<ns>/<service>`.

Protocol (no external lock service; all durable Temporal state):
- a holder (runbook, release or incident, each through `LeaseHolderSide` below) asks with the `lease.request`
  activity (`activities/leases.py`: signal-with-start of this workflow, signal `request`);
- the lease grants FIFO by signalling the holder's `lease_granted`; a holder with policy `refuse` that finds
  the lease taken is signalled `lease_refused` at once;
- the holder signals `release` when it closes (success, failure, abort: a `finally`);
- while held, the lease checks every `check_seconds` that its holder still runs (`lease.holder_open`), so a
  terminated holder cannot keep the target forever;
- the workflow ends when nobody holds or waits, and continues-as-new after many grants.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from enum import Enum

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from pitstop.runbook.leases import (
        LEASE_WORKFLOW, HolderCheck, LeaseGrant, LeaseHolder, LeaseRequest, LeaseState,
    )

from .activity_policies import ACTIVITY_TIMEOUT
from .run_metrics import lease_waited

GRANTS_BEFORE_CONTINUE_AS_NEW = 200


@workflow.defn(name=LEASE_WORKFLOW)
class TargetLease:
    def __init__(self) -> None:
        self._state = LeaseState(lease_id="")
        self._incoming: list[LeaseHolder] = []
        self._released: list[str] = []

    @workflow.signal
    def request(self, holder: LeaseHolder) -> None:
        self._incoming.append(holder)

    @workflow.signal
    def release(self, workflow_id: str) -> None:
        self._released.append(workflow_id)

    @workflow.query
    def state(self) -> LeaseState:
        return self._state

    @workflow.run
    async def run(self, state: LeaseState) -> None:
        self._state = state
        while True:
            await self._process_messages()
            if self._state.holder is None and self._state.waiters:
                await self._grant_next()
                continue
            if self._state.holder is None and not self._incoming and not self._released:
                return  # idle: a later request signal-with-starts a fresh lease workflow
            if self._state.grants >= GRANTS_BEFORE_CONTINUE_AS_NEW or workflow.info().is_continue_as_new_suggested():
                await self._process_messages()
                workflow.continue_as_new(self._state)
            try:
                await workflow.wait_condition(
                    lambda: bool(self._incoming or self._released), timeout=timedelta(seconds=self._state.check_seconds)
                )
            except TimeoutError:
                await self._check_holder()

    async def _process_messages(self) -> None:
        while self._released:
            workflow_id = self._released.pop(0)
            if self._state.holder and self._state.holder.workflow_id == workflow_id:
                self._state.holder = None
            self._state.waiters = [w for w in self._state.waiters if w.workflow_id != workflow_id]
        while self._incoming:
            holder = self._incoming.pop(0)
            current = self._state.holder
            if current and current.workflow_id == holder.workflow_id:
                await self._signal(holder, True, "lease already held by this run")  # a retried request
            elif any(w.workflow_id == holder.workflow_id for w in self._state.waiters):
                continue
            elif current is None:
                self._state.waiters.append(holder)
            elif holder.policy == "refuse":
                await self._signal(holder, False, f"{self._state.lease_id} is held by run {current.workflow_id} ({current.runbook})")
            else:
                self._state.waiters.append(holder)

    async def _grant_next(self) -> None:
        holder = self._state.waiters.pop(0)
        self._state.holder = holder
        self._state.grants += 1
        if not await self._signal(holder, True, ""):
            self._state.holder = None  # the waiter is gone

    async def _signal(self, holder: LeaseHolder, granted: bool, message: str) -> bool:
        handle = workflow.get_external_workflow_handle(holder.workflow_id, run_id=holder.run_id or None)
        signal = "lease_granted" if granted else "lease_refused"
        try:
            await handle.signal(signal, LeaseGrant(lease_id=self._state.lease_id, granted=granted, message=message))
        except FailureError:
            return False
        return True

    async def _check_holder(self) -> None:
        holder = self._state.holder
        if holder is None:
            return
        still_open = await workflow.execute_activity(
            "lease.holder_open",
            HolderCheck(workflow_id=holder.workflow_id, run_id=holder.run_id),
            result_type=bool,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
        )
        if not still_open and self._state.holder == holder:
            workflow.logger.info("lease %s: holder %s is closed; releasing", self._state.lease_id, holder.workflow_id)
            self._state.holder = None


class LeaseOutcome(str, Enum):
    """How a holder's wait for the lease ended."""

    GRANTED = "granted"
    REFUSED = "refused"  # policy `refuse` and the target was taken
    TIMED_OUT = "timed_out"
    STOPPED = "stopped"  # the holder's `stop()` became true first (an abort, a resolved alert)


class LeaseHolderSide:
    """The holder's side of the lease protocol, for every workflow that holds a target: runbooks, releases and
    incidents. The workflow owns the `lease_granted` / `lease_refused` signal handlers and forwards them here.

    - `wait_for_lease(...)` asks and waits, and returns a `LeaseOutcome` (incidents escalate on a busy target);
      `acquire(...)` is the same but raises on a refusal or a timeout (runbooks and releases fail).
    - `release()` sends `release` once a request was made (runbooks and releases: once, when they close);
      `leave()` gives the target back while held, or leaves the line while no answer came, and can be called
      at every exit (incidents). Two methods because recorded histories of each kind hold exactly these signals.
    """

    def __init__(self) -> None:
        self.lease_id = ""
        self.grant: LeaseGrant | None = None
        self.requested = False
        self.held = False  # granted while waiting, not given back yet

    def restore(self, *, lease_id: str, requested: bool, grant: LeaseGrant | None) -> None:
        """Take over the lease state of the previous run of a continue-as-new chain."""
        self.lease_id, self.requested, self.grant = lease_id, requested, grant
        self.held = grant is not None and grant.granted

    def granted(self, grant: LeaseGrant) -> None:
        if grant.lease_id == self.lease_id and self.grant is None:
            self.grant = grant

    def refused(self, grant: LeaseGrant) -> None:
        self.granted(grant)

    async def wait_for_lease(
        self,
        *,
        lease: str,
        holder: LeaseHolder,
        timeout: timedelta | None,
        stop: Callable[[], bool],
        activity_id: str | None = "lease",
        retry_policy: RetryPolicy | None = None,
        summary: str | None = None,
    ) -> LeaseOutcome:
        """Ask for `lease` (activity `lease.request`) and wait in line until granted, refused (policy `refuse`),
        `timeout`, or `stop()`. `activity_id`, `retry_policy` and `summary` are the request activity's options
        (each kind of holder keeps the ones its recorded histories were made with)."""
        self.lease_id = lease
        self.requested = True
        since = workflow.now()
        outcome = await self._wait(lease=lease, holder=holder, timeout=timeout, stop=stop, activity_id=activity_id,
                                   retry_policy=retry_policy, summary=summary)
        lease_waited(since=since, outcome=outcome.value)
        return outcome

    async def _wait(self, *, lease: str, holder: LeaseHolder, timeout: timedelta | None, stop: Callable[[], bool],
                    activity_id: str | None, retry_policy: RetryPolicy | None, summary: str | None) -> LeaseOutcome:
        await workflow.execute_activity(
            "lease.request", LeaseRequest(lease_id=lease, holder=holder), activity_id=activity_id,
            start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=retry_policy, summary=summary,
        )
        try:
            await workflow.wait_condition(lambda: self.grant is not None or stop(), timeout=timeout)
        except TimeoutError:
            return LeaseOutcome.TIMED_OUT
        if self.grant is None:
            return LeaseOutcome.STOPPED
        if not self.grant.granted:
            return LeaseOutcome.REFUSED
        self.held = True
        return LeaseOutcome.GRANTED

    async def acquire(
        self, *, lease: str, holder: LeaseHolder, wait_timeout: float | None, stop: Callable[[], bool]
    ) -> None:
        """Wait in line for the target (or fail at once with policy `refuse`); returns early if `stop()`."""
        outcome = await self.wait_for_lease(
            lease=lease, holder=holder, timeout=timedelta(seconds=wait_timeout) if wait_timeout else None,
            stop=stop, summary=f"lease {lease}",
        )
        if outcome is LeaseOutcome.TIMED_OUT:
            raise ApplicationError(
                f"gave up after {wait_timeout or 0:g}s waiting for {lease} (another mutating runbook holds it); "
                "retry later or raise lease.wait_timeout", type="LeaseTimeout", non_retryable=True,
            )
        if outcome is LeaseOutcome.REFUSED and self.grant is not None:
            raise ApplicationError(
                f"target busy, refused by lease policy: {self.grant.message}", type="LeaseRefused", non_retryable=True
            )

    async def release(self) -> None:
        """Send `release` if a request was made (whatever its answer); for a holder that closes once."""
        if self.requested:
            await self._signal_release()

    async def leave(self) -> bool:
        """Give the target back if held, or leave the line while no answer came (again at each call: harmless);
        nothing after a refusal or once given back. True when it gave back a held target."""
        if not self.requested or not (self.held or self.grant is None):
            return False
        gave_back = self.held
        await self._signal_release()
        self.held = False
        return gave_back

    async def _signal_release(self) -> None:
        try:
            await workflow.get_external_workflow_handle(self.lease_id).signal("release", workflow.info().workflow_id)
        except FailureError:
            pass  # the lease workflow already ended (it frees closed holders by itself)
