"""The runbook format: pydantic models of a runbook file (name, inputs, target, lease, steps).

These models are the typed tree the interpreter workflow walks. They carry no behaviour beyond parsing
durations; validation across fields (references, cycles, step arguments) lives in `validation.py`.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """`30` / `30s` / `500ms` / `5m` / `1h` / `1d` -> seconds (float)."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '30s', '5m', '1h'")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(f"invalid duration {value!r}: use seconds or a string like '30s', '5m', '1h'")


def format_duration(seconds: float) -> str:
    """The inverse of `parse_duration` for display: 600 -> `10m`, 90 -> `90s`, 0.5 -> `500ms`."""
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and (seconds / size).is_integer():
            return f"{seconds / size:g}{unit}"
    return f"{seconds * 1000:g}ms" if 0 < seconds < 1 else f"{seconds:g}s"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"},
            ],
            "description": "seconds, or a string like '500ms', '30s', '5m', '1h'",
        }
    ),
]

InputType = Literal["string", "integer", "number", "boolean", "list", "object"]

IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class InputSpec(_Strict):
    """One typed runbook input. No `default` = required."""

    type: InputType = "string"
    description: str = ""
    default: Any = Field(None, description="value used when the caller gives none; absent = required")
    enum: list[Any] | None = Field(None, description="allowed values")
    required: bool | None = Field(None, description="default: true when no `default` is given")

    @model_validator(mode="after")
    def _required_unless_default(self) -> InputSpec:
        if self.required is None:
            self.required = "default" not in self.model_fields_set
        return self


class RetrySpec(_Strict):
    attempts: int = Field(3, ge=1, le=100, description="total attempts, including the first")
    backoff: Duration = Field(1.0, description="delay before the first retry")
    backoff_coefficient: float = Field(2.0, ge=1.0)
    max_backoff: Duration | None = Field(None, description="upper bound of the delay between attempts")
    api_outage: Duration = Field(
        120.0, ge=0,
        description="how long a Kubernetes API that is unreachable or answers 429/5xx is waited out before the "
                    "step fails; those retries do not count against `attempts` (docs/reliability.md)",
    )


class ForEach(_Strict):
    """Fan a step out over a list; inside the step `${{ item }}` is the current element."""

    items: str | list[Any] = Field(description="a list, or an expression evaluating to one")
    parallelism: int = Field(10, ge=1, le=1000, description="items running at once")


class Compensation(_Strict):
    """Undo for a step, run in reverse completion order if the runbook fails or is aborted after it succeeded."""

    uses: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    timeout: Duration | None = None
    retry: RetrySpec | None = None


class Step(_Strict):
    id: str = Field(pattern=IDENTIFIER, description="unique within the runbook; referenced as steps.<id>")
    name: str = Field("", description="human title shown in status and history")
    uses: str = Field(description="step type, e.g. log, sleep, approval, runbook, kubernetes.scale")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", description="the step type's arguments")
    needs: Annotated[
        list[str],
        WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
    ] = Field(default_factory=list, description="ids of steps that must finish first")
    if_: str | bool | None = Field(None, alias="if", description="condition; the step is skipped when false")
    retry: RetrySpec | None = None
    timeout: Duration | None = Field(None, description="per attempt; default is the step type's")
    for_each: ForEach | None = None
    compensate: Compensation | None = None

    @field_validator("needs", mode="before")
    @classmethod
    def _one_need(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Target(_Strict):
    """What the runbook changes; values may be expressions over inputs. Keys the per-target lease."""

    service: str = ""
    namespace: str = ""
    region: str = ""
    cluster: str = Field("", description="defaults to the region")


class LeaseSpec(_Strict):
    policy: Literal["wait", "refuse"] = Field(
        "wait", description="when another mutating runbook holds the target: wait in line, or fail at once"
    )
    wait_timeout: Duration | None = Field(None, description="give up waiting after this long (policy=wait)")


class Runbook(_Strict):
    name: str = Field(pattern=IDENTIFIER)
    description: str = ""
    owner: str = Field("", description="team or person answerable for this runbook, e.g. platform-delivery")
    tags: list[str] = Field(default_factory=list, description="free labels for the catalog, e.g. release, remediation")
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    target: Target | None = Field(None, description="what this runbook acts on (lease key, search attributes)")
    lease: LeaseSpec = Field(default_factory=LeaseSpec)
    mutating: bool | None = Field(
        None, description="takes the target's lease; default: true when any step type is mutating"
    )
    approvers: list[str] = Field(default_factory=list, description="who may approve by default: `group:NAME` (a group of the access policy), `user:NAME` or a user name")
    max_parallel: int = Field(10, ge=1, le=1000, description="steps running at once")
    steps: list[Step] = Field(min_length=1)

    def step(self, step_id: str) -> Step | None:
        return next((s for s in self.steps if s.id == step_id), None)

    def step_types_used(self) -> list[str]:
        """The `uses:` of every step and every compensation, in file order."""
        return [s.uses for s in self.steps] + [s.compensate.uses for s in self.steps if s.compensate]

    def mutates(self, mutating_step_types: Collection[str]) -> bool:
        """Declared `mutating`, else whether any step or compensation uses a mutating step type."""
        if self.mutating is not None:
            return self.mutating
        return any(kind in mutating_step_types for kind in self.step_types_used())
