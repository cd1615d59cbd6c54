"""The step-type registry: what a runbook's `uses:` may name.

A step type is one registered class: its `with:` arguments model, its result model, the Temporal activity
that executes it, and whether it mutates anything (dry runs call read-only steps for real and ask mutating
steps what they *would* do). Adding a step type = one class decorated with `@register_step_type`; it then
shows up in validation and in the published JSON Schema.

Step types that talk to one region's cluster are `regional`: their arguments carry a `region` field and
their activity runs on that region's task queue (`pitstop-<region>`).

`native` step types (sleep, approval, runbook) have no activity: the interpreter workflow executes them
(timers, updates, child workflows). They live in `pitstop/runbook/native_steps.py`. `debug` step types exist only
on test workers (`worker.enable_debug_steps`).

Argument fields that name a worker env var (or a mapping whose values do) carry `json_schema_extra=ENV_VAR_NAME`,
fields holding a URL the worker calls carry `OUTBOUND_URL`: validation checks them against `AuthorReach`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

ArgsT = TypeVar("ArgsT", bound=BaseModel)

ENV_VAR_NAME: dict[str, Any] = {"x-pitstop-env-var": True}  # the value (or each value of a mapping) names an env var
OUTBOUND_URL: dict[str, Any] = {"x-pitstop-outbound-url": True}  # a URL the worker sends a request to


class StepArgs(BaseModel):
    """Base of every step's `with:` model: unknown arguments are errors."""

    model_config = ConfigDict(extra="forbid")


class StepResult(BaseModel):
    """Base of every step's output model. `changed` is False when the target already was as requested."""

    changed: bool = False
    summary: str = Field("", description="one human line for the audit timeline")


class StepInvocation(BaseModel, Generic[ArgsT]):
    """What the interpreter passes to a step's activity."""

    args: ArgsT
    dry_run: bool = False
    run_id: str = Field("", description="workflow id of the runbook run, for audit and idempotency keys")
    step_id: str = ""


class StepType:
    """Subclass, set the class attributes, decorate with `@register_step_type`."""

    name: ClassVar[str]  # e.g. "kubernetes.scale"
    description: ClassVar[str] = ""
    args_model: ClassVar[type[StepArgs]]
    result_model: ClassVar[type[StepResult]] = StepResult
    activity: ClassVar[str] = ""  # Temporal activity name (empty for native steps)
    native: ClassVar[bool] = False  # executed by the interpreter itself (sleep, approval, runbook), no activity
    child_workflow: ClassVar[str] = ""  # native step run as this child workflow: input = args, output = result
    mutating: ClassVar[bool] = False
    regional: ClassVar[bool] = False  # args_model has `region: str`; runs on task queue pitstop-<region>
    default_timeout_seconds: ClassVar[float] = 60.0
    heartbeat_seconds: ClassVar[float | None] = None
    debug: ClassVar[bool] = False  # test-only: registered and valid only with `worker.enable_debug_steps`


STEP_TYPES: dict[str, type[StepType]] = {}

StepTypeT = TypeVar("StepTypeT", bound=type[StepType])


def register_step_type(cls: StepTypeT) -> StepTypeT:
    if cls.name in STEP_TYPES and STEP_TYPES[cls.name] is not cls:
        raise ValueError(f"step type {cls.name!r} registered twice ({STEP_TYPES[cls.name].__module__}, {cls.__module__})")
    if cls.child_workflow and not cls.native:
        raise ValueError(f"step type {cls.name!r} has a child_workflow, so it must be `native = True`")
    if not cls.native and not cls.activity:
        raise ValueError(f"step type {cls.name!r} needs an `activity` name (or `native = True`)")
    if cls.regional and "region" not in cls.args_model.model_fields:
        raise ValueError(f"regional step type {cls.name!r} needs a `region` argument")
    STEP_TYPES[cls.name] = cls
    return cls


def get_step_type(name: str) -> type[StepType] | None:
    return STEP_TYPES.get(name)
