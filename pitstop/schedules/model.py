"""The schedules file format (`runbooks/schedules.yaml`): pydantic models of each declared schedule.

A schedule starts one runbook with fixed inputs on a cron expression or a fixed interval, in a time zone, with
jitter, an overlap policy and a catch-up window; it may be declared paused (with a note saying why) and
names an owner. An optional `error_budget:` (the release gate's model, `pitstop.delivery.budget.ErrorBudgetCheck`)
makes each run check the service's SLO error budget first and end `skipped`, with the reason, when it is spent. Cross-file checks (the runbook exists, the inputs fit it) live in `validation.py`.
"""

from __future__ import annotations

import json
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pitstop.delivery.budget import ErrorBudgetCheck
from pitstop.runbook.model import Duration

from .cron import cron_problem

SCHEDULE_ID = r"^[a-z0-9][a-z0-9-]{0,62}$"
OverlapPolicy = Literal["skip", "buffer_one", "buffer_all", "cancel_other", "terminate_other", "allow_all"]
DEFAULT_SCHEDULES_FILE = "schedules.yaml"  # in the runbooks directory


class ScheduleEntry(BaseModel):
    """One schedule: when to start which runbook with which inputs, and what to do when runs overlap."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=SCHEDULE_ID, description="the Temporal Schedule id (lowercase, digits, dashes)")
    description: str = ""
    owner: str = Field(min_length=1, description="team or person answerable for this schedule")
    runbook: str = Field(description="runbook name (file runbooks/<name>.yaml)")
    inputs: dict[str, Any] = Field(default_factory=dict, description="the runbook's inputs, checked like `pitstop run -i`")
    dry_run: bool = Field(False, description="start dry runs: report what would change, change nothing")
    cron: str | None = Field(None, description="cron expression (5 fields or @daily/@hourly/...), in `time_zone`")
    every: Duration | None = Field(None, description="fixed interval instead of a cron expression, e.g. '6h'")
    time_zone: str = Field("UTC", description="IANA time zone of the cron expression, e.g. Europe/Berlin")
    jitter: Duration = Field(0.0, description="start each run up to this much later (spreads fleet-wide load)")
    overlap: OverlapPolicy = Field(
        "skip", description="when the previous run still runs: skip, buffer_one, buffer_all, cancel_other, "
        "terminate_other, allow_all (Temporal's overlap policies)",
    )
    catchup_window: Duration = Field(
        3600.0, description="after Temporal was down, start a missed run only if it is at most this late"
    )
    error_budget: ErrorBudgetCheck | None = Field(
        None, description="check this SLO error budget before each run's first step (same fields as a release's "
        "`error_budget`, plus service/namespace/region defaulting to the runbook's target); exhausted or unknown: "
        "the run ends `skipped` with the reason",
    )
    paused: bool = Field(False, description="declared paused; `note` says why")
    note: str = Field("", description="why the schedule is paused (required when paused)")

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is not None:
            problem = cron_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("time_zone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as UTC or Europe/Berlin)") from None
        return value

    @field_validator("every")
    @classmethod
    def _interval_at_least_a_second(cls, value: float | None) -> float | None:
        if value is not None and value < 1:
            raise ValueError("the interval must be at least 1s")
        return value

    @model_validator(mode="after")
    def _one_timing_and_a_note_when_paused(self) -> ScheduleEntry:
        if (self.cron is None) == (self.every is None):
            raise ValueError("give exactly one of `cron` and `every`")
        if self.paused and not self.note.strip():
            raise ValueError("a paused schedule needs a `note` saying why")
        return self

    def declared(self, *, task_queue: str) -> dict[str, Any]:
        """What pitstop applied, as plain JSON data: recorded on the schedule, compared by the next apply."""
        return {**self.model_dump(mode="json"), "task_queue": task_queue}

    def timing(self) -> str:
        """One line: `cron 0 2 * * * Europe/Berlin` or `every 6h`."""
        when = f"cron {self.cron} {self.time_zone}" if self.cron is not None else f"every {self.every:g}s"
        return when + (f", jitter {self.jitter:g}s" if self.jitter else "")


class SchedulesFile(BaseModel):
    """The whole file: a mapping with one key, `schedules`, a list (may be empty)."""

    model_config = ConfigDict(extra="forbid")

    schedules: list[ScheduleEntry] = Field(default_factory=list)


SCHEMA_ID = "https://pitstop.dev/schemas/schedules.schema.json"


def schedules_json_schema_text() -> str:
    schema = SchedulesFile.model_json_schema(mode="validation")
    text = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}
    return json.dumps(text, indent=2, sort_keys=True) + "\n"
