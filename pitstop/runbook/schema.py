"""JSON Schema of the runbook format, generated from the models and the step-type registry.

Each registered step type contributes an `if uses == <name> then with: <its args schema>` clause, so an
editor validates arguments per step type. Written to `runbooks/runbook.schema.json` by
`pitstop runbooks schema` (and checked in CI to be up to date).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from .model import Runbook
from .registry import load_step_types

EXPRESSION_PATTERN = r"^\s*\$\{\{.*\}\}\s*$"
SCHEMA_ID = "https://pitstop.dev/schemas/runbook.schema.json"


def runbook_json_schema() -> dict[str, Any]:
    step_types = load_step_types()
    names = sorted(step_types)
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(Runbook, "validation")]
    models += [(step_types[n].args_model, "validation") for n in names]
    refs, top = models_json_schema(models, ref_template="#/$defs/{model}")
    defs: dict[str, Any] = top.get("$defs", {})
    schema: dict[str, Any] = dict(defs.pop("Runbook"))
    defs["Expression"] = {
        "type": "string",
        "pattern": EXPRESSION_PATTERN,
        "description": "a `${{ ... }}` expression over inputs, steps.<id>.outputs/status, item, run",
    }
    format_defs = {"Step", "Compensation", "ForEach", "InputSpec", "LeaseSpec", "RetrySpec", "Target", "Expression"}
    for def_name, definition in defs.items():  # step arguments, including nested argument models
        if def_name not in format_defs:
            _accept_expressions(definition)
    clauses = []
    for name in names:
        ref = refs[(step_types[name].args_model, "validation")]
        clauses.append({
            "if": {"properties": {"uses": {"const": name}}, "required": ["uses"]},
            "then": {"properties": {"with": ref}},
        })
    descriptions = {n: step_types[n].description for n in names}
    for holder in ("Step", "Compensation"):
        definition = defs[holder]
        definition["properties"]["uses"] = {
            "type": "string",
            "enum": names,
            "description": "step type: " + "; ".join(f"{n}: {d}" for n, d in descriptions.items() if d),
        }
        definition["allOf"] = clauses
    schema["$defs"] = defs
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def _accept_expressions(args_schema: dict[str, Any]) -> None:
    """Any argument may instead be a whole-value expression (checked against its type by `validate`)."""
    for name, prop in list(args_schema.get("properties", {}).items()):
        if prop.get("anyOf", [{}])[-1] == {"$ref": "#/$defs/Expression"}:
            continue
        args_schema["properties"][name] = {"anyOf": [prop, {"$ref": "#/$defs/Expression"}]}


def runbook_json_schema_text() -> str:
    return json.dumps(runbook_json_schema(), indent=2, sort_keys=True) + "\n"
