"""The capacity report as Markdown: summary, flags, node plans, chargeback per team, the largest changes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .binpack import NodePlan
from .collection import RegionCapacity
from .strategies import ContainerRecommendation
from .workloads import WorkloadRecommendation

if TYPE_CHECKING:
    from .report import CapacityReport

MIB = 2**20
TOP_CHANGES = 20


def cores(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}m"


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value / MIB:.0f}Mi"


def recommendation_cell(c: ContainerRecommendation) -> str:
    cpu = cores(c.cpu_request) if c.cpu_request is not None else c.cpu_status.value
    memory = mib(c.memory_request) if c.memory_request is not None else c.memory_status.value
    return f"{cpu} / {memory}"


def change(w: WorkloadRecommendation) -> float:
    return w.requests_change()


def plan_line(plan: NodePlan) -> str:
    best = plan.best
    if best is None:
        return f"| {plan.scenario} | {plan.pods} | no instance type fits every pod | | | |"
    cost = f"${best.hourly_cost_usd * 730:,.0f}/month" if best.hourly_cost_usd is not None else "no price"
    return (f"| {plan.scenario} | {plan.pods} | {best.nodes} x {best.instance_type} ({best.algorithm.value}) |"
            f" {best.lower_bound} | {best.gap_percent:.1f} % | {cost} |")


def region_lines(r: "CapacityReport", index: int, capacity: RegionCapacity) -> list[str]:
    region = r.regions[index]
    cur = region.current
    cost = f"${cur.hourly_cost_usd * 730:,.0f}/month" if cur.hourly_cost_usd is not None else "no price"
    lines = [f"## {region.region}", "",
             f"Cluster today: {cur.nodes} nodes ({', '.join(f'{n} x {t}' for t, n in sorted(cur.nodes_by_type.items()))}),"
             f" requests {cur.cpu_percent:.0f} % of CPU and {cur.memory_percent:.0f} % of memory, {cost}.", "",
             "| requests | pods | best plan | lower bound | gap | cost |", "|---|---|---|---|---|---|",
             plan_line(region.today), plan_line(region.recommended), "",
             "| team | by requests | idle share | by usage |", "|---|---|---|---|"]
    usage = {a.name: a for a in region.by_usage.by_team}
    for a in region.by_requests.by_team:
        u = usage.get(a.name)
        lines.append(f"| {a.name} | ${a.monthly_usd:,.2f} | ${a.idle_hourly_usd * 730:,.2f} |"
                     f" {'-' if u is None else f'${u.monthly_usd:,.2f}'} |")
    lines += ["", f"Savings if applied: ${region.savings.requests_monthly_usd:,.2f}/month of requests"
              + (f", ${region.savings.nodes_monthly_usd:,.2f}/month of nodes" if region.savings.nodes_monthly_usd is not None else ""),
              ""]
    if region.mape_percent:
        lines.append("Forecast back-test (train 10 days, score the rest), MAPE: "
                     + ", ".join(f"{k} {v:.1f} %" for k, v in sorted(region.mape_percent.items())))
        lines.append("")
    growing = sorted((f for f in capacity.service_forecasts if f.resource == "cpu" and f.peak_now > 0),
                     key=lambda f: f.peak_forecast / f.peak_now, reverse=True)[:5]
    if growing:
        lines.append("Growing most (CPU, weekly peak in 4 weeks): " + ", ".join(
            f"{f.workload} x{f.peak_forecast / f.peak_now:.2f}" for f in growing))
        lines.append("")
    lines += ["| workload | team | replicas | container | today (cpu / memory) | recommended | evidence |",
              "|---|---|---|---|---|---|---|"]
    for w in sorted(capacity.workloads, key=change, reverse=True)[:TOP_CHANGES]:
        for c in w.containers:
            e = c.evidence
            lines.append(f"| {w.key} | {w.team} | {w.replicas} | {c.container} |"
                         f" {cores(c.current.requests.cpu_cores)} / {mib(c.current.requests.memory_bytes)} |"
                         f" {recommendation_cell(c)} | p95 {cores(e.cpu_percentiles.get('p95'))}, max mem"
                         f" {mib(e.memory_max_bytes)}, {e.cpu_points} points, {e.history_hours:.0f} h"
                         f"{'; ' + c.info if c.info else ''} |")
    return lines + [""]


def markdown(r: "CapacityReport", regions: Sequence[RegionCapacity]) -> str:
    c = r.counts
    lines = [f"# Capacity report ({r.strategy})", "",
             f"{c.workloads} workloads, {c.containers} containers: {c.recommended} recommended,"
             f" {c.not_enough_data} not enough data, {c.no_data} no data, {c.hpa_skipped} left to their HPA,"
             f" {c.excluded} workloads excluded by policy. Cost ${r.monthly_cost_usd:,.0f}/month;"
             f" savings if applied ${r.monthly_savings_usd:,.0f}/month of requests.", ""]
    if r.flags:
        lines += ["Flags:", *(f"- {f.kind} {f.region} {f.subject}: {f.detail}" for f in r.flags), ""]
    for index, capacity in enumerate(regions):
        lines += region_lines(r, index, capacity)
    return "\n".join(lines)
