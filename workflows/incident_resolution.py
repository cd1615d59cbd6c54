"""Waiting for an `Incident`'s alert to resolve: the `resolved` notification, or (patch `alert-vanished-check`)
Alertmanager no longer knowing the alert in two checks in a row — a lost notification must not keep an
incident open for its whole maximum duration.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from pitstop.incidents import AlertActiveRequest, AlertPresence

from .activity_policies import ACTIVITY_TIMEOUT, BEST_EFFORT
from .incident_context import IncidentContext


async def wait_resolved_or_gone(ctx: IncidentContext, until: datetime) -> None:
    """Wait for the `resolved` notification; every `alert_check_seconds` also ask Alertmanager whether the alert
    is still there. Gone in two checks in a row (its resolution was lost: an Alertmanager restart, a failed
    delivery) counts as resolved; an Alertmanager that cannot be asked changes nothing."""
    interval, absent = ctx.alert_check_seconds, 0
    if interval <= 0:
        await wait_resolved(ctx, until)
        return
    while not ctx.resolved:
        remaining = (until - workflow.now()).total_seconds()
        if remaining <= 0:
            return
        try:
            await workflow.wait_condition(lambda: ctx.resolved, timeout=timedelta(seconds=min(interval, remaining)))
            return
        except asyncio.TimeoutError:
            pass
        alert = ctx.alert
        try:
            presence = await workflow.execute_activity(
                "incident.alert_active", AlertActiveRequest(alertname=alert.name, fingerprint=alert.fingerprint),
                result_type=AlertPresence, start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=BEST_EFFORT,
            )
        except ActivityError:
            continue
        absent = absent + 1 if presence.active is False else 0
        if absent >= 2 and not ctx.resolved:
            ctx.status.resolved_at = workflow.now()
            ctx.log("resolved", f"{presence.detail}: no `resolved` notification arrived; treated as resolved")
            return


async def wait_resolved(ctx: IncidentContext, until: datetime) -> None:
    """Wait for the `resolved` notification until `until` (at the latest)."""
    remaining = (until - workflow.now()).total_seconds()
    if remaining > 0 and not ctx.resolved:
        try:
            await workflow.wait_condition(lambda: ctx.resolved, timeout=timedelta(seconds=remaining))
        except asyncio.TimeoutError:
            pass
