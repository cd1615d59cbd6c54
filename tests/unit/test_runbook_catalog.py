"""The runbook catalog's rendering: summary rows (owner, mutating or read-only, lease policy, schedules), the
input table, the DAG tree and the Web UI start-form JSON, over the shipped runbooks and small examples."""

from __future__ import annotations

import json

import pytest

from pitstop.config import SHIPPED_RUNBOOKS_DIR
from pitstop.runbook.catalog import (
    catalog_rows, changes_things, dag_tree, input_lines, lease_text, mutating_step_types, one_line, render_rows,
    show_runbook, start_form_json, start_form_request,
)
from pitstop.runbook.model import Runbook, format_duration, parse_duration
from pitstop.runbook.registry import load_step_types
from pitstop.runbook.request import RunbookRequest
from pitstop.runbook.validation import RunbookInvalid, parse_runbook, resolve_inputs, validate_catalog
from pitstop.schedules.model import ScheduleEntry
from tests.fixtures.worker_reach import DEFAULT_REACH, TEST_REACH

SHIPPED = {name: runbook for name, (_, runbook) in validate_catalog(SHIPPED_RUNBOOKS_DIR, reach=DEFAULT_REACH)[0].items()}
MUTATING = mutating_step_types(load_step_types())
NIGHTLY = ScheduleEntry(id="nightly-hello", owner="sre", runbook="hello", cron="0 2 * * *", time_zone="Europe/Berlin")


def runbook(text: str) -> Runbook:
    parsed, problems = parse_runbook(text, reach=TEST_REACH)
    assert parsed is not None, [str(p) for p in problems]
    return parsed


def test_every_shipped_runbook_names_an_owner_and_tags() -> None:
    assert len(SHIPPED) >= 12
    assert {name: (r.owner, r.tags) for name, r in SHIPPED.items() if not r.owner or not r.tags} == {}
    assert SHIPPED["canary"].owner == "platform-delivery" and SHIPPED["remediate-restart"].owner == "sre"


def test_rows_of_the_shipped_catalog() -> None:
    rows = {row.name: row for row in catalog_rows(SHIPPED, [NIGHTLY], MUTATING)}
    assert sorted(rows) == sorted(SHIPPED)
    assert (rows["hello"].mutating, rows["hello"].lease, rows["hello"].schedules) == (False, "none", ["nightly-hello"])
    assert (rows["canary"].mutating, rows["canary"].lease, rows["canary"].schedules) == (True, "refuse", [])
    assert rows["remediate-restart"].lease == "wait (up to 10m)"
    assert rows["restart-service"].lease == "wait (up to 30m)"
    assert rows["multi-region-release"].lease == "wait"  # no wait_timeout: waits in line for as long as it takes
    assert rows["scale-service"].description == "Set a service's replica count in one region, wait for the rollout,..."
    remediation = catalog_rows(SHIPPED, [], MUTATING, tag="remediation")
    assert remediation and all(r.name.startswith("remediate-") for r in remediation)


def test_mutating_comes_from_step_types_compensations_declarations_and_children() -> None:
    reader = runbook("name: reader\nsteps:\n  - {id: a, uses: log}\n")
    undo_only = runbook(
        "name: undo\nsteps:\n  - id: a\n    uses: log\n    compensate: {uses: debug.change, with: {what: x}}\n"
    )
    declared = runbook("name: declared\nmutating: true\nsteps:\n  - {id: a, uses: log}\n")
    parent = runbook("name: parent\nsteps:\n  - id: c\n    uses: runbook\n    with: {name: declared}\n")
    loop = runbook("name: loop\nsteps:\n  - id: c\n    uses: runbook\n    with: {name: loop}\n")
    known = {r.name: r for r in (reader, undo_only, declared, parent, loop)}
    assert [changes_things(r, known, MUTATING) for r in (reader, undo_only, declared, parent, loop)] == [
        False, True, True, True, False,
    ]
    assert lease_text(parent, MUTATING) == "none"  # the child takes its own lease
    assert lease_text(declared, MUTATING) == "none (no target)"


def test_one_line_takes_the_first_sentence_shortened() -> None:
    assert one_line("Restart a\n  service.  Then wait for it.") == "Restart a service."
    assert one_line("") == "(no description)"
    long = one_line("word " * 40, width=30)
    assert len(long) <= 30 and long.endswith("...")


def test_rows_render_as_an_aligned_table() -> None:
    lines = render_rows(catalog_rows({"hello": SHIPPED["hello"], "canary": SHIPPED["canary"]}, [NIGHTLY], MUTATING))
    assert lines[0].split() == ["NAME", "OWNER", "CHANGES", "LEASE", "SCHEDULES", "DESCRIPTION"]
    assert lines[1].split()[:5] == ["canary", "platform-delivery", "mutating", "refuse", "-"]
    assert lines[2].split()[:5] == ["hello", "platform-delivery", "read-only", "none", "nightly-hello"]
    assert lines[0].index("DESCRIPTION") == lines[1].index("Canary") == lines[2].index("Smallest")


def test_inputs_show_type_required_or_default_allowed_values_and_description() -> None:
    lines = input_lines(SHIPPED["multi-region-release"])
    assert any(line.split()[:3] == ["service", "string", "required"] for line in lines), lines
    strategy = next(line for line in lines if line.split()[0] == "strategy")
    assert 'default "canary"' in strategy and 'one of ["canary", "blue_green"]' in strategy
    regions = next(line for line in lines if line.split()[0] == "regions")
    assert 'default ["eu-central", "us-east"]' in regions and "release order" in regions
    assert input_lines(runbook("name: r\nsteps:\n  - {id: a, uses: log}\n")) == ["  (none)"]


def test_dag_tree_hangs_each_step_under_its_last_need() -> None:
    assert dag_tree(SHIPPED["hello"], MUTATING) == [
        "  greet: log",
        "  ├─ left: log",
        "  └─ right: log",
        "     └─ loud: log  needs left, right  if ${{ inputs.shout }}",
        "        └─ done: log",
    ]


def test_dag_tree_shows_for_each_retry_timeout_compensation_and_mutating_steps() -> None:
    restart = dag_tree(SHIPPED["restart-service"], MUTATING)
    assert [line.strip().split(":")[0].lstrip("└─ ") for line in restart] == ["before", "approve", "restart", "wait"]
    assert "for_each ${{ inputs.regions }} (1 at a time)  retry 3x" in restart[2]
    assert "kubernetes.rollout_restart (mutating)" in restart[2]
    assert "timeout 15m" in restart[3]
    scale = dag_tree(SHIPPED["scale-service"], MUTATING)
    assert "undo: kubernetes.scale" in scale[1] and "if ${{ steps.current.outputs.replicas != inputs.replicas }}" in scale[1]
    for rb in SHIPPED.values():  # every step exactly once
        ids = [line.split(":")[0].split()[-1] for line in dag_tree(rb, MUTATING)]
        assert sorted(ids) == sorted(s.id for s in rb.steps), rb.name


def test_start_form_of_a_runbook_without_required_inputs_runs_as_is() -> None:
    form = json.loads(start_form_json(SHIPPED["hello"]))
    assert form == start_form_request(SHIPPED["hello"]) == {"runbook": "hello", "inputs": {"name": "world", "shout": False}}
    request = RunbookRequest.model_validate(form)
    assert resolve_inputs(SHIPPED["hello"], request.inputs) == {"name": "world", "shout": False}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_start_form_json_is_a_runbook_request_with_every_input(name: str) -> None:
    form = json.loads(start_form_json(SHIPPED[name]))
    request = RunbookRequest.model_validate(form)
    assert request.runbook == name and set(request.inputs) == set(SHIPPED[name].inputs)
    for input_name, spec in SHIPPED[name].inputs.items():
        if spec.required:
            assert str(request.inputs[input_name]).startswith(f"<{input_name}: ")
        else:
            assert request.inputs[input_name] == spec.default


def test_an_unedited_placeholder_for_a_typed_input_is_refused_with_the_cli_message() -> None:
    form = start_form_request(SHIPPED["scale-service"])
    assert form["inputs"]["replicas"] == "<replicas: integer, absolute replica count>"
    with pytest.raises(RunbookInvalid, match="input 'replicas': type mismatch: expected integer, got string"):
        resolve_inputs(SHIPPED["scale-service"], form["inputs"])
    filled = {**form["inputs"], "service": "checkout", "replicas": 4}
    assert resolve_inputs(SHIPPED["scale-service"], filled)["replicas"] == 4


def test_show_puts_it_together() -> None:
    text = show_runbook(
        SHIPPED["hello"], file="runbooks/hello.yaml", runbooks=SHIPPED, schedules=[NIGHTLY], mutating_types=MUTATING,
        task_queue="pitstop", start_form_url="http://127.0.0.1:8233/namespaces/default/workflows/start-workflow",
    )
    assert "owner: platform-delivery    tags: example" in text
    assert "changes: read-only    lease: none" in text
    assert "  nightly-hello  cron 0 2 * * * Europe/Berlin  owner sre" in text
    assert "workflow type Runbook, task queue pitstop" in text
    assert start_form_json(SHIPPED["hello"]) in "\n".join(line.removeprefix("  ") for line in text.splitlines())


@pytest.mark.parametrize("seconds", [0.5, 1, 90, 600, 3600, 5400, 86400, 7 * 86400])
def test_format_duration_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds
    assert format_duration(600) == "10m" and format_duration(90) == "90s"
