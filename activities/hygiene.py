"""The fleet-hygiene report activity (`hygiene.report`): every region's inventory in, one report per team out.

No external system: the decision is pure (`pitstop.hygiene.report`); it runs as an activity on the shared task
queue so its result is recorded as the step's output (Markdown and JSON per team, shown by `pitstop status`).
"""

from __future__ import annotations

from temporalio import activity

from pitstop.hygiene.report import HygieneReport, hygiene_report
from pitstop.runbook.step_types import StepInvocation
from pitstop.steps.hygiene import ReportArgs


class HygieneReports:
    @activity.defn(name="hygiene.report")
    async def report(self, invocation: StepInvocation[ReportArgs]) -> HygieneReport:
        return hygiene_report(invocation.args.inventories)
