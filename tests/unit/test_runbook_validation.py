"""Validation: shipped runbooks are valid; each invalid runbook fails with its expected message."""

from __future__ import annotations

from pathlib import Path

import pytest

from pitstop.config import SHIPPED_RUNBOOKS_DIR
from pitstop.runbook.validation import (
    RunbookInvalid,
    parse_runbook,
    resolve_inputs,
    validate_catalog,
)
from tests.fixtures.worker_reach import DEFAULT_REACH, TEST_REACH

INVALID = Path(__file__).resolve().parents[1] / "data" / "invalid_runbooks"


def test_shipped_runbooks_validate() -> None:
    catalog, problems = validate_catalog(SHIPPED_RUNBOOKS_DIR, reach=DEFAULT_REACH)
    assert [str(p) for p in problems] == []
    assert {"hello", "restart-service", "scale-service"} <= set(catalog)


@pytest.mark.parametrize("path", sorted(INVALID.glob("*.yaml")), ids=lambda p: p.stem)
def test_invalid_runbook_fails_with_expected_message(path: Path) -> None:
    expected = path.read_text().splitlines()[0].split("expect: ", 1)[1].strip()
    _, problems = validate_catalog(path, reach=TEST_REACH)
    messages = [str(p) for p in problems]
    assert any(expected in m for m in messages), messages


def test_invalid_runbooks_cover_the_issue_list() -> None:
    names = {p.stem for p in INVALID.glob("*.yaml")}
    assert {"unknown-step-type", "unknown-argument", "type-mismatch-literal", "type-mismatch-reference",
            "unknown-step-reference", "unknown-output", "cycle", "duplicate-ids"} <= names


def test_child_runbook_checks_across_files(tmp_path: Path) -> None:
    (tmp_path / "child.yaml").write_text(
        "name: child\ninputs:\n  svc: {type: string}\nsteps:\n  - {id: a, uses: log}\n"
    )
    (tmp_path / "parent.yaml").write_text(
        "name: parent\nsteps:\n  - id: call\n    uses: runbook\n    with: {name: child, inputs: {sv: x}}\n"
        "  - id: other\n    uses: runbook\n    with: {name: ghost}\n"
    )
    _, problems = validate_catalog(tmp_path, reach=TEST_REACH)
    messages = [str(p) for p in problems]
    assert any("parent.yaml:3: step 'call', field 'with.inputs': missing required input 'svc' of runbook 'child'" in m for m in messages), messages
    assert any("unknown input 'sv' of runbook 'child'" in m for m in messages), messages
    assert any("step 'other', field 'with.name': unknown runbook 'ghost'" in m for m in messages), messages


def test_resolve_inputs_applies_defaults_and_checks_types() -> None:
    runbook, problems = parse_runbook(
        "name: r\ninputs:\n  n: {type: integer}\n  mode: {type: string, default: safe, enum: [safe, fast]}\n"
        "  ratio: {type: number, default: 0.5}\nsteps:\n  - {id: a, uses: log}\n",
        reach=TEST_REACH,
    )
    assert runbook is not None, problems
    assert resolve_inputs(runbook, {"n": 2, "ratio": 1}) == {"n": 2, "mode": "safe", "ratio": 1}
    with pytest.raises(RunbookInvalid) as info:
        resolve_inputs(runbook, {"mode": "yolo", "extra": 1})
    text = str(info.value)
    assert "missing required input 'n' (integer)" in text
    assert "input 'mode': 'yolo' is not one of ['safe', 'fast']" in text
    assert "unknown input 'extra'" in text
    with pytest.raises(RunbookInvalid, match="input 'n': type mismatch: expected integer, got string"):
        resolve_inputs(runbook, {"n": "2"})


def test_durations_and_single_need_are_normalised() -> None:
    runbook, problems = parse_runbook(
        "name: r\nsteps:\n  - {id: a, uses: sleep, with: {duration: 5m}, timeout: 1h, retry: {attempts: 2, backoff: 500ms}}\n"
        "  - {id: b, uses: log, needs: a}\n",
        reach=TEST_REACH,
    )
    assert runbook is not None, problems
    assert runbook.steps[0].timeout == 3600.0
    assert runbook.steps[0].retry is not None and runbook.steps[0].retry.backoff == 0.5
    assert runbook.steps[1].needs == ["a"]


def test_runbook_round_trips_through_json() -> None:
    """The typed tree crosses the activity -> workflow boundary as JSON (field names, not aliases)."""
    from pitstop.runbook.model import Runbook

    runbook, _ = parse_runbook(
        "name: r\ninputs:\n  x: {type: integer}\n  y: {default: 1, type: integer}\n"
        "steps:\n  - {id: a, uses: log, if: 'inputs.x > 1', with: {message: hi}}\n",
        reach=TEST_REACH,
    )
    assert runbook is not None
    again = Runbook.model_validate_json(runbook.model_dump_json())
    assert again == runbook
    assert again.inputs["x"].required and not again.inputs["y"].required


def test_engine_test_runbooks_validate() -> None:
    """The integration tests' runbooks (long linear, long saga, deadlines, escalation) are valid."""
    catalog, problems = validate_catalog(Path(__file__).resolve().parents[1] / "data" / "runbooks", reach=TEST_REACH)
    assert [str(p) for p in problems] == []
    assert {"linear", "long-saga", "deadline", "escalate"} <= set(catalog)


def test_yaml_merge_keys_work_as_in_yaml_safe_load() -> None:
    runbook, problems = parse_runbook(
        "name: r\nsteps:\n  - &first {id: a, uses: log, timeout: 1m, with: {message: hi}}\n"
        "  - {<<: *first, id: b, needs: a, timeout: 2m}\n", reach=DEFAULT_REACH,
    )
    assert runbook is not None, [str(p) for p in problems]
    assert [(s.id, s.uses, s.timeout, s.with_) for s in runbook.steps] == [
        ("a", "log", 60.0, {"message": "hi"}), ("b", "log", 120.0, {"message": "hi"})]


@pytest.mark.parametrize("text, line, message", [
    ("name: r\nsteps:\n  - ? {id: a}\n    : log\n", 3, "a mapping key must be a plain value"),
    ("name: r\nsteps:\n  - {id: a, uses: log, timeout: !!int soon}\n", 3, "invalid literal for int()"),
    ("name: r\nsteps:\n  - {id: a, uses: !!python/object:os.system log}\n", 3, "could not determine a constructor"),
    ("name: r\nsteps: {<<: 5}\n", 2, "a merge key (<<) needs a mapping"),
    ("name: r\n\x1fsteps: []\n", 2, "character #x001f at offset 8 is not allowed"),
])
def test_yaml_the_validator_cannot_read_is_a_problem_at_its_line(text: str, line: int, message: str) -> None:
    _, problems = parse_runbook(text, "r.yaml", reach=DEFAULT_REACH)
    assert [(p.file, p.line) for p in problems] == [("r.yaml", line)], [str(p) for p in problems]
    assert message in problems[0].message
