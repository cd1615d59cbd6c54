"""JSON Schema of the policy file, generated from `PolicyFile`; written to `runbooks/policy.schema.json` by
`pitstop policy schema --write` (checked in CI to be up to date), so editors validate policy files."""

from __future__ import annotations

import json
from typing import Any

from .model import PolicyFile

SCHEMA_ID = "https://pitstop.dev/schemas/policy.schema.json"
SCHEMA_FILE_NAME = "policy.schema.json"


def policy_json_schema() -> dict[str, Any]:
    schema = PolicyFile.model_json_schema(mode="validation", ref_template="#/$defs/{model}")
    # a string is accepted wherever a list of patterns is (the model's `_as_list` validators)
    for definition in (schema.get("$defs", {}).get("Rule", {}), schema.get("$defs", {}).get("TargetPatterns", {})):
        for prop in definition.get("properties", {}).values():
            if prop.get("type") == "array" and prop.get("items", {}).get("type") == "string":
                array = {k: prop.pop(k) for k in list(prop) if k not in ("title", "description", "default")}
                prop["anyOf"] = [array, {"type": "string"}]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def policy_json_schema_text() -> str:
    return json.dumps(policy_json_schema(), indent=2, sort_keys=True) + "\n"
