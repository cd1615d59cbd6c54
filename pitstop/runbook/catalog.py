"""The runbook catalog as people read it (`pitstop runbooks list` / `show`), as pure functions over parsed runbooks.

`catalog_rows` gives one summary row per runbook: one-line description, owner, tags, whether it changes
anything (mutating) or only reads, the lease policy it runs under, and the schedules (from the schedules file)
that start it. `show_runbook` renders one runbook: its inputs (type, required or default, description), its
step DAG as an indented tree (needs, if, for_each, retry, timeout, compensation) and `start_form_request`,
the JSON to paste into the Temporal Web UI's start-workflow form.

"Mutating" is the rule the interpreter uses to decide whether a run takes its target's lease
(`Runbook.mutates`), extended through child runbooks named literally in `runbook` steps: a runbook that starts
a mutating child changes things too (the child takes its own lease).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from pitstop.schedules.model import ScheduleEntry

from . import dag, expressions
from .model import InputSpec, Runbook, Step, format_duration
from .request import RUNBOOK_WORKFLOW
from .step_types import StepType

DESCRIPTION_WIDTH = 72


class CatalogRow(BaseModel):
    """One runbook in `pitstop runbooks list`."""

    name: str
    description: str = Field(description="the first sentence of the description, on one line")
    owner: str = ""
    tags: list[str] = Field(default_factory=list)
    mutating: bool
    lease: str = Field(description="the lease policy a run uses, e.g. `refuse`, `wait (up to 10m)`, `none`")
    schedules: list[str] = Field(default_factory=list, description="ids of the schedules that start it")


def mutating_step_types(step_types: Mapping[str, type[StepType]]) -> set[str]:
    return {name for name, kind in step_types.items() if kind.mutating}


def one_line(description: str, width: int = DESCRIPTION_WIDTH) -> str:
    """The first sentence of a description on one line, shortened to `width` characters."""
    text = " ".join(description.split())
    end = text.find(". ")
    sentence = text[: end + 1] if end >= 0 else text
    return textwrap.shorten(sentence, width=width, placeholder="...") if sentence else "(no description)"


def child_runbooks(runbook: Runbook) -> list[str]:
    """Runbooks started by its `runbook` steps whose name is a literal (not an expression)."""
    names = [s.with_.get("name") for s in runbook.steps if s.uses == "runbook"]
    return [n for n in names if isinstance(n, str) and not expressions.find(n)]


def changes_things(
    runbook: Runbook, runbooks: Mapping[str, Runbook], mutating_types: Collection[str], _seen: frozenset[str] = frozenset(),
) -> bool:
    """Mutating (takes its lease) or starts a child runbook that is."""
    if runbook.mutates(mutating_types):
        return True
    seen = _seen | {runbook.name}
    return any(
        changes_things(runbooks[child], runbooks, mutating_types, seen)
        for child in child_runbooks(runbook) if child in runbooks and child not in seen
    )


def lease_text(runbook: Runbook, mutating_types: Collection[str]) -> str:
    """The lease a run takes: `none` for read-only runbooks or without a target service, else the policy."""
    if not runbook.mutates(mutating_types):
        return "none"
    if runbook.target is None or not runbook.target.service:
        return "none (no target)"
    if runbook.lease.policy == "refuse":
        return "refuse"
    timeout = runbook.lease.wait_timeout
    return "wait" if timeout is None else f"wait (up to {format_duration(timeout)})"


def catalog_rows(
    runbooks: Mapping[str, Runbook], schedules: Sequence[ScheduleEntry], mutating_types: Collection[str], *, tag: str | None = None,
) -> list[CatalogRow]:
    """One row per runbook, by name; only those carrying `tag` when given."""
    rows = []
    for name in sorted(runbooks):
        runbook = runbooks[name]
        if tag is not None and tag not in runbook.tags:
            continue
        rows.append(CatalogRow(
            name=name, description=one_line(runbook.description), owner=runbook.owner, tags=list(runbook.tags),
            mutating=changes_things(runbook, runbooks, mutating_types), lease=lease_text(runbook, mutating_types),
            schedules=[s.id for s in schedules if s.runbook == name],
        ))
    return rows


def render_rows(rows: Sequence[CatalogRow]) -> list[str]:
    """The rows as an aligned table with a header (description last, so long ones do not push columns; tags
    are in `--json` and `show`, and `--tag` filters by them)."""
    table = [("NAME", "OWNER", "CHANGES", "LEASE", "SCHEDULES", "DESCRIPTION")]
    for row in rows:
        table.append((
            row.name, row.owner or "-", "mutating" if row.mutating else "read-only", row.lease,
            ", ".join(row.schedules) or "-", row.description,
        ))
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(line, widths)), line[-1]]).rstrip() for line in table]


# ---------------------------------------------------------------- one runbook


def input_lines(runbook: Runbook) -> list[str]:
    """One line per input: name, type, `required` or its default, allowed values, description."""
    if not runbook.inputs:
        return ["  (none)"]
    width = max(len(name) for name in runbook.inputs)
    lines = []
    for name, spec in runbook.inputs.items():
        need = "required" if spec.required else f"default {json.dumps(spec.default)}"
        allowed = f"  one of {json.dumps(spec.enum)}" if spec.enum is not None else ""
        about = f"  {' '.join(spec.description.split())}" if spec.description else ""
        lines.append(f"  {name.ljust(width)}  {spec.type:<7}  {need}{allowed}{about}")
    return lines


def _tree_parent(step: Step, order: Sequence[str]) -> str | None:
    """The step a tree line hangs under: the need that finishes last in the DAG's order."""
    return max(step.needs, key=order.index) if step.needs else None


def _step_text(step: Step, mutating_types: Collection[str]) -> str:
    parts = [f"{step.id}: {step.uses}{' (mutating)' if step.uses in mutating_types else ''}"]
    if step.name:
        parts.append(repr(step.name))
    if len(step.needs) > 1:
        parts.append(f"needs {', '.join(step.needs)}")
    if step.if_ is not None:
        parts.append(f"if {step.if_}")
    if step.for_each is not None:
        items = step.for_each.items if isinstance(step.for_each.items, str) else json.dumps(step.for_each.items)
        parts.append(f"for_each {items} ({step.for_each.parallelism} at a time)")
    if step.retry is not None:
        parts.append(f"retry {step.retry.attempts}x")
    if step.timeout is not None:
        parts.append(f"timeout {format_duration(step.timeout)}")
    if step.compensate is not None:
        parts.append(f"undo: {step.compensate.uses}")
    return "  ".join(parts)


def dag_tree(runbook: Runbook, mutating_types: Collection[str]) -> list[str]:
    """The steps as an indented tree: each step under the need that finishes last (all needs are named when
    there are several), roots in file order. Every step appears once."""
    order = dag.topological_order({s.id: s.needs for s in runbook.steps})
    children: dict[str | None, list[Step]] = {}
    for step in runbook.steps:
        children.setdefault(_tree_parent(step, order), []).append(step)
    lines: list[str] = []

    def walk(parent: str | None, prefix: str) -> None:
        kids = children.get(parent, [])
        for index, step in enumerate(kids):
            last = index == len(kids) - 1
            branch = "" if parent is None else ("└─ " if last else "├─ ")
            lines.append(f"  {prefix}{branch}{_step_text(step, mutating_types)}")
            walk(step.id, prefix + ("" if parent is None else ("   " if last else "│  ")))

    walk(None, "")
    return lines


def _placeholder(name: str, spec: InputSpec) -> str:
    """A value the operator replaces: `<name: type, description>` (`<name: one of a, b>` for an enum). Left as
    is, it is refused at start unless the input is a free string."""
    kind = f"one of {', '.join(map(str, spec.enum))}" if spec.enum else spec.type
    about = " ".join(spec.description.split())
    return f"<{name}: {kind}{', ' + about if about else ''}>"


def start_form_request(runbook: Runbook) -> dict[str, Any]:
    """The Web UI start form's input (a `RunbookRequest`): every input, defaults filled in, required ones as
    `<name: type, description>` placeholders to replace."""
    inputs = {
        name: _placeholder(name, spec) if spec.required else spec.default for name, spec in runbook.inputs.items()
    }
    return {"runbook": runbook.name, "inputs": inputs}


def start_form_json(runbook: Runbook) -> str:
    """`start_form_request` as JSON, one input per line (lists and objects stay on their input's line)."""
    request = start_form_request(runbook)
    inputs = [f"    {json.dumps(name)}: {json.dumps(value)}" for name, value in request["inputs"].items()]
    body = ["  \"inputs\": {", ",\n".join(inputs), "  }"] if inputs else ["  \"inputs\": {}"]
    return "\n".join(["{", f"  \"runbook\": {json.dumps(request['runbook'])},", *body, "}"])


def show_runbook(
    runbook: Runbook, *, file: str, runbooks: Mapping[str, Runbook], schedules: Sequence[ScheduleEntry],
    mutating_types: Collection[str], task_queue: str, start_form_url: str,
) -> str:
    """Everything about one runbook, for `pitstop runbooks show NAME`."""
    changes = changes_things(runbook, runbooks, mutating_types)
    lease = lease_text(runbook, mutating_types)
    lines = [f"{runbook.name}  ({file})"]
    lines += ["  " + line for line in textwrap.wrap(" ".join(runbook.description.split()), 100)]
    lines += [
        f"owner: {runbook.owner or '-'}    tags: {', '.join(runbook.tags) or '-'}",
        f"changes: {'mutating' if changes else 'read-only'}    lease: {lease}"
        + ("  (scheduled runs: refuse, skipped while the target is busy)" if lease.startswith("wait") else ""),
    ]
    if runbook.approvers:
        lines.append(f"approvers: {', '.join(runbook.approvers)}")
    used_by = [s for s in schedules if s.runbook == runbook.name]
    lines.append("schedules: " + ("-" if not used_by else ""))
    lines += [f"  {s.id}  {s.timing()}  owner {s.owner}{'  dry run' if s.dry_run else ''}{'  PAUSED' if s.paused else ''}"
              for s in used_by]
    lines += ["", "inputs:", *input_lines(runbook)]
    lines += ["", "steps:", *dag_tree(runbook, mutating_types)]
    lines += [
        "", f"start it from the Web UI ({start_form_url}):",
        f"  workflow type {RUNBOOK_WORKFLOW}, task queue {task_queue}, input (replace the <...> placeholders):",
        *("  " + line for line in start_form_json(runbook).splitlines()),
    ]
    return "\n".join(lines)
