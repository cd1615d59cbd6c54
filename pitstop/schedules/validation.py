"""Validation of the schedules file before anything reaches Temporal; every problem names file and line.

`parse_schedules(text, file, runbooks)` checks YAML syntax, the format (unknown keys, a bad cron expression,
time zone or duration, both or neither of `cron`/`every`, a paused schedule without a note), duplicate ids,
unknown runbooks, each schedule's inputs against its runbook's inputs (the same check as `pitstop run -i`:
`resolve_inputs`), and that an `error_budget:` knows which service to measure (its own or the runbook's target). `load_schedules(path, runbooks_dir, reach=...)` reads the file and the runbook catalog.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pitstop.runbook.model import Runbook
from pitstop.runbook.reach import AuthorReach
from pitstop.runbook.validation import Problem, RunbookInvalid, resolve_inputs, runbook_files, validate_catalog
from pitstop.runbook.yaml_source import SourceDoc, YamlSyntaxError, load

from .model import ScheduleEntry


class SchedulesInvalid(RunbookInvalid):
    """The schedules file has problems (`str()` is one `file:line: ...` line per problem)."""


def parse_schedules(
    text: str, file: str, runbooks: Mapping[str, Runbook], broken_runbooks: Collection[str] = (),
) -> tuple[list[ScheduleEntry], list[Problem]]:
    """The file's valid schedules and every problem found (a file with problems is not applied at all)."""
    try:
        doc = load(text)
    except YamlSyntaxError as exc:
        return [], [Problem(file, exc.line, str(exc))]
    if doc.data is None:
        return [], []
    problems: list[Problem] = []
    if not isinstance(doc.data, dict) or not isinstance(doc.data.get("schedules", []), list):
        return [], [Problem(file, doc.line(("schedules",)), "a schedules file is a mapping with one key, `schedules`: a list")]
    for key in doc.data:
        if key != "schedules":
            problems.append(Problem(file, doc.line((key,)), f"unknown key {key!r} (the file has one key, `schedules`)"))
    entries: list[ScheduleEntry] = []
    first_line: dict[str, int] = {}
    for index, item in enumerate(doc.data.get("schedules") or []):
        entry = _entry(doc, file, index, item, problems)
        if entry is None:
            continue
        line = doc.line(("schedules", index))
        if entry.id in first_line:
            problems.append(Problem(file, doc.line(("schedules", index, "id")),
                                    f"duplicate schedule id (first defined at line {first_line[entry.id]})", None, f"{entry.id}.id"))
            continue
        first_line[entry.id] = line
        if _runbook_problems(doc, file, index, entry, runbooks, broken_runbooks, problems):
            entries.append(entry)
    return ([] if problems else entries), problems


def _entry(doc: SourceDoc, file: str, index: int, item: Any, problems: list[Problem]) -> ScheduleEntry | None:
    base = ("schedules", index)
    sid = str(item.get("id", f"#{index + 1}")) if isinstance(item, dict) else f"#{index + 1}"
    try:
        return ScheduleEntry.model_validate(item)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = f"unknown field {loc[-1]!r} (fields: {', '.join(ScheduleEntry.model_fields)})"
            field = ".".join(str(p) for p in loc)
            problems.append(Problem(file, doc.line(base + loc), message, None, f"{sid}.{field}" if field else sid))
        return None


def _runbook_problems(
    doc: SourceDoc, file: str, index: int, entry: ScheduleEntry, runbooks: Mapping[str, Runbook],
    broken_runbooks: Collection[str], problems: list[Problem],
) -> bool:
    """Unknown runbook or inputs that do not fit it -> problems; True when the entry is fine."""
    base = ("schedules", index)
    runbook = runbooks.get(entry.runbook)
    if runbook is None:
        if entry.runbook in broken_runbooks:
            message = f"runbook {entry.runbook!r} is not valid (see `pitstop runbooks validate`)"
        else:
            message = f"unknown runbook {entry.runbook!r} (known: {', '.join(sorted(runbooks)) or 'none'})"
        problems.append(Problem(file, doc.line(base + ("runbook",)), message, None, f"{entry.id}.runbook"))
        return False
    try:
        resolve_inputs(runbook, entry.inputs, file)
    except RunbookInvalid as exc:
        for problem in exc.problems:
            name = next((n for n in entry.inputs if repr(n) in problem.message), None)
            where = base + (("inputs", name) if name is not None else ("inputs",))
            problems.append(Problem(file, doc.line(where), problem.message, None, f"{entry.id}.inputs"))
        return False
    missing = budget_scope_missing(entry, runbook)
    if missing:
        message = (f"runbook {entry.runbook!r} declares no target {' or '.join(missing)}; "
                   f"give error_budget.{' and error_budget.'.join(missing)}")
        problems.append(Problem(file, doc.line(base + ("error_budget",)), message, None, f"{entry.id}.error_budget"))
        return False
    return True


def budget_scope_missing(entry: ScheduleEntry, runbook: Runbook) -> list[str]:
    """The fields of the entry's `error_budget` that neither it nor the runbook's `target:` gives (service, namespace)."""
    if entry.error_budget is None:
        return []
    target = runbook.target
    return [name for name in ("service", "namespace")
            if not getattr(entry.error_budget, name) and not (target is not None and getattr(target, name))]


def load_schedules(path: Path, runbooks_dir: Path, *, reach: AuthorReach) -> list[ScheduleEntry]:
    """The file's schedules, checked against the runbooks in `runbooks_dir`; raises SchedulesInvalid."""
    return parse_checked(path.read_text(), str(path), runbooks_dir, reach=reach)


def parse_checked(text: str, file: str, runbooks_dir: Path, *, reach: AuthorReach) -> list[ScheduleEntry]:
    """A schedules file's text (`file` names it in the problems), checked against the runbooks in `runbooks_dir`;
    raises SchedulesInvalid."""
    catalog, _ = validate_catalog(runbooks_dir, reach=reach)
    runbooks = {name: runbook for name, (_, runbook) in catalog.items()}
    valid_files = {p.resolve() for p, _ in catalog.values()}
    broken = {p.stem for p in runbook_files(runbooks_dir) if p.resolve() not in valid_files}
    entries, problems = parse_schedules(text, file, runbooks, broken)
    if problems:
        raise SchedulesInvalid(problems)
    return entries
