"""The fleet-hygiene report: one report per team, as Markdown (for people) and JSON (the findings), pure.

`hygiene_report(inventories)` runs the checks (`checks.findings`) and groups the findings by team. Every team
that owns a checked object gets a report, a clean team too (it says so). `notification` is one short Markdown
message for a chat notification: counts per team, no details (those are in the run's output).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from pitstop.steps.hygiene import Check, Finding, HygieneReport, TeamReport

from .checks import CHECK_TITLES, findings
from .inventory import RegionInventory


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def team_markdown(team: str, found: list[Finding], *, regions: list[str], deployments: int) -> str:
    lines = [
        f"## Fleet hygiene: {team}",
        "",
        f"Regions: {', '.join(regions) or 'none'}. Deployments checked: {deployments}. Findings: {len(found)}.",
        "",
    ]
    if not found:
        return "\n".join([*lines, "No findings."]) + "\n"
    lines += ["| check | object | regions | detail |", "|---|---|---|---|"]
    for f in found:
        lines.append(
            f"| {_cell(CHECK_TITLES[f.check])} | {f.kind} {f.namespace}/{f.name} | {', '.join(f.regions)} | {_cell(f.detail)} |"
        )
    return "\n".join(lines) + "\n"


def _teams_checked(inventories: list[RegionInventory]) -> Counter[str]:
    """team -> Deployments checked (once per region); teams owning only PDBs or routes count with 0."""
    teams: Counter[str] = Counter()
    for inv in inventories:
        for owner in [*(p.team for p in inv.disruption_budgets), *(v.team for v in inv.virtual_services)]:
            teams[owner] += 0
        teams.update(d.team for d in inv.deployments)
    return teams


def hygiene_report(inventories: Iterable[RegionInventory]) -> HygieneReport:
    regions_inventories = list(inventories)
    regions = sorted({inv.region for inv in regions_inventories})
    found = findings(regions_inventories)
    checked = _teams_checked(regions_inventories)
    teams = sorted(set(checked) | {f.team for f in found})
    reports = []
    for team in teams:
        own = [f for f in found if f.team == team]
        reports.append(TeamReport(
            team=team, deployments=checked[team], findings=own,
            counts={c.value: n for c in Check if (n := sum(f.check is c for f in own))},
            markdown=team_markdown(team, own, regions=regions, deployments=checked[team]),
        ))
    deployments = sum(checked.values())
    with_findings = [r for r in reports if r.findings]
    headline = f"Fleet hygiene over {', '.join(regions) or 'no region'}: {len(found)} findings in {deployments} Deployments"
    per_team = [f"- {r.team}: {len(r.findings)} ({', '.join(f'{k} {n}' for k, n in r.counts.items())})" for r in with_findings]
    return HygieneReport(
        regions=regions, deployments=deployments, findings_total=len(found), teams=reports,
        notification="\n".join([headline + ("" if per_team else ", none"), *per_team]),
        summary=f"{headline}; teams with findings: {', '.join(r.team for r in with_findings) or 'none'}",
    )
