"""The published JSON Schema is up to date and validates the shipped runbooks."""

from __future__ import annotations

import json

import yaml

from pitstop.config import SHIPPED_RUNBOOKS_DIR
from pitstop.runbook.registry import load_step_types
from pitstop.runbook.schema import runbook_json_schema, runbook_json_schema_text
from pitstop.runbook.validation import runbook_files

SCHEMA_FILE = SHIPPED_RUNBOOKS_DIR / "runbook.schema.json"


def test_schema_file_is_up_to_date() -> None:
    assert SCHEMA_FILE.read_text() == runbook_json_schema_text(), "run `pitstop runbooks schema --write`"


def test_every_step_type_is_in_the_schema() -> None:
    schema = runbook_json_schema()
    assert set(schema["$defs"]["Step"]["properties"]["uses"]["enum"]) == set(load_step_types())


def test_schema_validates_shipped_and_rejects_unknown_argument() -> None:
    try:
        import jsonschema
    except ImportError as exc:  # pragma: no cover
        raise AssertionError("jsonschema is needed for this test: pip install jsonschema") from exc
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    for path in (p for p in SHIPPED_RUNBOOKS_DIR.glob("*.yaml") if "steps" in (yaml.safe_load(p.read_text()) or {})):
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert errors == [], (path, errors)
    bad = {"name": "x", "steps": [{"id": "a", "uses": "log", "with": {"mesage": "typo"}}]}
    assert any("mesage" in e.message for e in validator.iter_errors(bad))
