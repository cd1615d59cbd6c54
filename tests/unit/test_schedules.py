"""The schedules file (format, file:line problems, runbook and input checks, cron), its JSON Schema, the
reconcile decision, and the rules that skip a scheduled run whose target is busy or whose error budget is spent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pitstop.config import SHIPPED_RUNBOOKS_DIR
from pitstop.delivery.budget import ErrorBudgetCheck, budget_scope
from pitstop.runbook.validation import parse_runbook
from pitstop.schedules.cron import cron_problem
from pitstop.schedules.model import ScheduleEntry, schedules_json_schema_text
from pitstop.schedules.reconcile import ExistingSchedule, plan_changes
from pitstop.schedules.skips import BUDGET_REFUSED, lease_policy, skips_run
from pitstop.schedules.validation import SchedulesInvalid, load_schedules, parse_schedules
from tests.fixtures.worker_reach import DEFAULT_REACH

HELLO = parse_runbook((SHIPPED_RUNBOOKS_DIR / "hello.yaml").read_text(), "hello.yaml", reach=DEFAULT_REACH)[0]
RUNBOOKS = {"hello": HELLO}


def problems_of(text: str) -> list[str]:
    entries, problems = parse_schedules(text, "schedules.yaml", RUNBOOKS, broken_runbooks={"broken"})
    assert not (entries and problems), "a file with problems yields no schedules"
    return [str(p) for p in problems]


GOOD = """\
schedules:
  - id: nightly-hello
    owner: team-sre
    runbook: hello
    inputs: {name: fleet}
    cron: "30 2 * * 1-5"
    time_zone: Europe/Berlin
    jitter: 5m
    overlap: buffer_one
    catchup_window: 30m
  - id: often
    owner: team-sre
    runbook: hello
    every: 90s
    paused: true
    note: waiting for the new quota
"""


def test_a_good_file_parses_to_typed_entries() -> None:
    entries, problems = parse_schedules(GOOD, "schedules.yaml", RUNBOOKS)
    assert problems == []
    nightly, often = entries
    assert (nightly.cron, nightly.time_zone, nightly.jitter, nightly.overlap, nightly.catchup_window) == (
        "30 2 * * 1-5", "Europe/Berlin", 300.0, "buffer_one", 1800.0)
    assert nightly.inputs == {"name": "fleet"} and nightly.timing() == "cron 30 2 * * 1-5 Europe/Berlin, jitter 300s"
    assert (often.every, often.paused, often.note, often.overlap) == (90.0, True, "waiting for the new quota", "skip")


def test_unknown_runbook_names_file_line_and_the_known_ones() -> None:
    text = "schedules:\n  - id: x\n    owner: o\n    every: 1h\n    runbook: helo\n"
    assert problems_of(text) == ["schedules.yaml:5: field 'x.runbook': unknown runbook 'helo' (known: hello)"]


def test_a_runbook_that_does_not_validate_is_named_as_such() -> None:
    text = "schedules:\n  - {id: x, owner: o, every: 1h, runbook: broken}\n"
    assert problems_of(text) == [
        "schedules.yaml:2: field 'x.runbook': runbook 'broken' is not valid (see `pitstop runbooks validate`)"
    ]


def test_inputs_are_checked_against_the_runbook_like_the_cli_does() -> None:
    text = "schedules:\n  - id: x\n    owner: o\n    every: 1h\n    runbook: hello\n    inputs:\n      name: 3\n      shoutt: true\n"
    assert problems_of(text) == [
        "schedules.yaml:8: field 'x.inputs': runbook 'hello': unknown input 'shoutt' (known: name, shout)",
        "schedules.yaml:7: field 'x.inputs': runbook 'hello': input 'name': type mismatch: expected string, got integer 3",
    ]


@pytest.mark.parametrize(("cron", "message"), [
    ("0 2 * *", "a cron expression has 5 fields (minute hour day-of-month month day-of-week), '0 2 * *' has 4"),
    ("0 24 * * *", "cron hour field '24': 24 is outside 0-23"),
    ("*/0 * * * *", "cron minute field '*/0': step '0' is not a positive number"),
    ("0 2 * * fri-mon", "cron day of week field 'fri-mon': range 'fri-mon' runs backwards"),
    ("0 2 L * *", "cron day of month field 'L': 'L' is not a number"),
    ("@nightly", "unknown cron macro '@nightly'"),
    ("CRON_TZ=UTC 0 2 * * *", "put the time zone in `time_zone`, not in the cron expression"),
])
def test_bad_cron_names_the_field_and_line(cron: str, message: str) -> None:
    text = f'schedules:\n  - id: x\n    owner: o\n    runbook: hello\n    cron: "{cron}"\n'
    (problem,) = problems_of(text)
    assert problem.startswith("schedules.yaml:5: field 'x.cron': " + message), problem


def test_valid_cron_expressions() -> None:
    for cron in ("0 2 * * *", "*/15 8-18 * * mon-fri", "0 0 1,15 jan,jul *", "5 4 * * 7", "@daily", "@hourly"):
        assert cron_problem(cron) is None, cron


@pytest.mark.parametrize(("entry", "message"), [
    ("{id: x, owner: o, runbook: hello}", "schedules.yaml:2: field 'x': give exactly one of `cron` and `every`"),
    ("{id: x, owner: o, runbook: hello, every: 1h, cron: '@daily'}", "schedules.yaml:2: field 'x': give exactly one"),
    ("{id: x, owner: o, runbook: hello, every: 1h, paused: true}", "schedules.yaml:2: field 'x': a paused schedule needs a `note`"),
    ("{id: x, owner: o, runbook: hello, every: 1h, time_zone: Mars/Olympus}", "schedules.yaml:2: field 'x.time_zone': unknown time zone"),
    ("{id: x, owner: o, runbook: hello, every: 1h, overlap: queue}", "schedules.yaml:2: field 'x.overlap': Input should be 'skip'"),
    ("{id: x, owner: o, runbook: hello, every: 0.5}", "schedules.yaml:2: field 'x.every': the interval must be at least 1s"),
    ("{id: X_1, owner: o, runbook: hello, every: 1h}", "schedules.yaml:2: field 'X_1.id': String should match pattern"),
    ("{id: x, runbook: hello, every: 1h}", "schedules.yaml:2: field 'x.owner': Field required"),
    ("{id: x, owner: o, runbook: hello, every: 1h, when: 2am}", "schedules.yaml:2: field 'x.when': unknown field 'when'"),
])
def test_format_problems(entry: str, message: str) -> None:
    (problem,) = problems_of(f"schedules:\n  - {entry}\n")
    assert problem.startswith(message), problem


def test_duplicate_ids_syntax_errors_and_shape() -> None:
    text = "schedules:\n  - {id: x, owner: o, runbook: hello, every: 1h}\n  - {id: x, owner: o, runbook: hello, every: 2h}\n"
    assert problems_of(text) == ["schedules.yaml:3: field 'x.id': duplicate schedule id (first defined at line 2)"]
    assert problems_of("schedules:\n  - id: [x\n")[0].startswith("schedules.yaml:")
    assert problems_of("- id: x\n") == ["schedules.yaml:1: a schedules file is a mapping with one key, `schedules`: a list"]
    assert problems_of("schedules: []\nextra: 1\n") == ["schedules.yaml:2: unknown key 'extra' (the file has one key, `schedules`)"]
    assert problems_of("schedules: []\n") == [] and problems_of("") == []


def test_load_schedules_checks_against_the_runbooks_directory(tmp_path: Path) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_text("schedules:\n  - {id: x, owner: o, runbook: scale-service, every: 1h, inputs: {service: a}}\n")
    with pytest.raises(SchedulesInvalid) as info:
        load_schedules(path, SHIPPED_RUNBOOKS_DIR, reach=DEFAULT_REACH)
    assert str(info.value) == (f"{path}:2: field 'x.inputs': runbook 'scale-service': missing required input "
                               "'replicas' (integer: absolute replica count)")


def test_shipped_schedules_file_is_valid_and_its_schema_up_to_date() -> None:
    shipped = {s.id: s for s in load_schedules(SHIPPED_RUNBOOKS_DIR / "schedules.yaml", SHIPPED_RUNBOOKS_DIR, reach=DEFAULT_REACH)}
    hygiene = shipped["nightly-fleet-hygiene"]
    assert shipped["nightly-capacity"].runbook == "nightly-capacity" and shipped["nightly-capacity"].overlap == "skip"
    chaos = shipped["nightly-chaos"]
    assert chaos.runbook == "nightly-chaos" and not chaos.paused
    files = [entry["experiment_file"] for entry in chaos.inputs["experiments"]]
    assert files and all((SHIPPED_RUNBOOKS_DIR.parent / "chaos" / "experiments" / f).is_file() for f in files), files
    assert (hygiene.id, hygiene.runbook, hygiene.overlap, hygiene.dry_run) == ("nightly-fleet-hygiene", "fleet-hygiene", "skip", False)
    assert hygiene.cron == "30 2 * * *" and hygiene.time_zone == "Europe/Berlin" and hygiene.owner
    schema_file = SHIPPED_RUNBOOKS_DIR / "schedules.schema.json"
    assert schema_file.read_text() == schedules_json_schema_text(), "run `pitstop schedules schema --write`"


def test_schema_accepts_a_good_file_and_rejects_an_unknown_field() -> None:
    import jsonschema
    import yaml

    validator = jsonschema.Draft202012Validator(json.loads((SHIPPED_RUNBOOKS_DIR / "schedules.schema.json").read_text()))
    assert [e.message for e in validator.iter_errors(yaml.safe_load(GOOD))] == []
    bad = {"schedules": [{"id": "x", "owner": "o", "runbook": "hello", "every": "1h", "colour": "red"}]}
    assert any("colour" in e.message for e in validator.iter_errors(bad))


# ---------------------------------------------------------------- the reconcile decision


def declared(schedule_id: str, **changes: object) -> dict[str, object]:
    entry = ScheduleEntry.model_validate({"id": schedule_id, "owner": "o", "runbook": "hello", "every": "1h", **changes})
    return entry.declared(task_queue="pitstop")


def test_plan_creates_updates_deletes_and_keeps() -> None:
    desired = {"new": declared("new"), "same": declared("same"), "edited": declared("edited", every="2h", jitter="1m")}
    existing = [
        ExistingSchedule(id="same", managed=True, declared=declared("same")),
        ExistingSchedule(id="edited", managed=True, declared=declared("edited")),
        ExistingSchedule(id="gone", managed=True, declared=declared("gone")),
        ExistingSchedule(id="theirs", managed=False),
    ]
    plan = {c.id: c for c in plan_changes(desired, existing)}
    assert {sid: c.kind for sid, c in plan.items()} == {
        "new": "create", "same": "unchanged", "edited": "update", "gone": "delete"}
    assert plan["edited"].fields == ["every", "jitter"]
    assert list(plan) == sorted(plan), "changes come sorted by id"


def test_plan_never_touches_a_schedule_pitstop_did_not_create() -> None:
    (change,) = plan_changes({"shared": declared("shared")}, [ExistingSchedule(id="shared", managed=False)])
    assert change.kind == "conflict" and "not created by pitstop" in change.detail
    assert plan_changes({}, [ExistingSchedule(id="theirs", managed=False)]) == []


def test_a_moved_task_queue_is_an_update_and_a_pause_outside_the_file_is_kept() -> None:
    moved = declared("x")
    moved["task_queue"] = "other"
    (change,) = plan_changes({"x": declared("x")}, [ExistingSchedule(id="x", managed=True, declared=moved)])
    assert (change.kind, change.fields) == ("update", ["task_queue"])
    paused = ExistingSchedule(id="x", managed=True, declared=declared("x"), paused=True, note="paused by bob: incident")
    (change,) = plan_changes({"x": declared("x")}, [paused])
    assert change.kind == "unchanged" and change.detail == "paused outside the file: paused by bob: incident"


def test_a_schedule_created_by_pitstop_without_a_declaration_is_updated() -> None:
    (change,) = plan_changes({"x": declared("x")}, [ExistingSchedule(id="x", managed=True, declared=None)])
    assert change.kind == "update" and "runbook" in change.fields


# ---------------------------------------------------------------- scheduled runs and busy targets


def test_scheduled_runs_refuse_a_busy_target_and_are_skipped_not_failed() -> None:
    assert lease_policy(trigger="schedule", declared="wait") == "refuse"
    assert lease_policy(trigger="cli", declared="wait") == "wait"
    assert skips_run(trigger="schedule", failure_type="LeaseRefused")
    assert not skips_run(trigger="cli", failure_type="LeaseRefused")
    assert not skips_run(trigger="schedule", failure_type="RunbookFailed")
    assert not skips_run(trigger="schedule", failure_type=None)


# ---------------------------------------------------------------- error budgets

RESTART = parse_runbook((SHIPPED_RUNBOOKS_DIR / "restart-service.yaml").read_text(), "restart-service.yaml",
                        reach=DEFAULT_REACH)[0]


def budget_entries(entry: str) -> tuple[list[ScheduleEntry], list[str]]:
    text = f"schedules:\n  - {{id: nightly, owner: sre, cron: '0 2 * * *', {entry}}}\n"
    entries, problems = parse_schedules(text, "schedules.yaml", {"hello": HELLO, "restart-service": RESTART})
    return entries, [str(p) for p in problems]


def test_an_error_budget_is_the_release_gates_model_measured_at_the_runbooks_target() -> None:
    target = RESTART.target
    assert target is not None and target.service and target.namespace
    inputs = "inputs: {service: checkout, namespace: shop}"
    (entry,), problems = budget_entries(f"runbook: restart-service, {inputs}, error_budget: {{slo_percent: 99.5, window: 7d}}")
    assert problems == []
    assert entry.error_budget is not None and (entry.error_budget.slo_percent, entry.error_budget.window) == (99.5, "7d")
    scope = budget_scope(entry.error_budget, {"service": "checkout", "namespace": "shop", "region": "eu-central"})
    assert (scope.service, scope.namespace, scope.region) == ("checkout", "shop", "eu-central")
    own = ErrorBudgetCheck(service="ledger", namespace="pay")
    assert budget_scope(own, {"service": "checkout", "namespace": "shop", "region": "us-east"}).model_dump() == {
        "service": "ledger", "namespace": "pay", "region": "us-east"}


def test_an_error_budget_without_a_service_to_measure_or_with_bad_fields_is_refused_with_its_line() -> None:
    _, problems = budget_entries("runbook: hello, error_budget: {slo_percent: 99.9}")
    assert problems == ["schedules.yaml:2: field 'nightly.error_budget': runbook 'hello' declares no target service or namespace; "
                        "give error_budget.service and error_budget.namespace"], problems
    (entry,), problems = budget_entries("runbook: hello, error_budget: {service: ledger, namespace: pay}")
    assert problems == [] and entry.error_budget is not None and entry.error_budget.window == "30d"
    _, problems = budget_entries("runbook: hello, error_budget: {service: a, namespace: b, slo_percent: 100}")
    assert len(problems) == 1 and "error_budget.slo_percent" in problems[0] and "less than 100" in problems[0], problems
    _, problems = budget_entries("runbook: hello, error_budget: {service: a, namespace: b, window: soon}")
    assert len(problems) == 1 and "error_budget.window" in problems[0], problems


def test_a_refused_error_budget_skips_a_scheduled_run_and_fails_any_other() -> None:
    assert skips_run(trigger="schedule", failure_type=BUDGET_REFUSED)
    assert not skips_run(trigger="cli", failure_type=BUDGET_REFUSED)
