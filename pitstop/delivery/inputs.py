"""`ReleaseInput`: the input of `ProgressiveRelease` — a release spec for one region plus, when a run
continues-as-new, the state it carries (`carried.CarriedRelease`).

It lives apart from `spec.py` so imports flow one way: spec <- promql <- models <- decisions <- carried <- inputs.
"""

from __future__ import annotations

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from pitstop.kubernetes_names import KubeLabelName

from .carried import CarriedRelease
from .spec import DEFAULT_HISTORY_LIMIT, ReleaseSpec, _Strict


class ReleaseInput(_Strict):
    """Input of `ProgressiveRelease`: a release in one region."""

    release: ReleaseSpec
    region: KubeLabelName
    task_queue: str = Field("", description="base task queue; activities run on <base>-<region>; default the workflow's")
    hold_after_promotion: bool = Field(
        False, description="waves: after promotion wait for the parent's finalize/rollback instead of the warm window"
    )
    parent_workflow_id: str = Field("", description="waves: notified with signal `region_result` on promotion or failure")
    lease: bool = Field(True, description="hold the service's per-target lease during the release")
    history_limit: int = Field(
        DEFAULT_HISTORY_LIMIT, ge=100, le=40_000,
        description="continue-as-new between analysis runs once this run's history has this many events "
        "(or when Temporal suggests it), so a long hold never approaches Temporal's history limits",
    )
    carried: SkipJsonSchema[CarriedRelease | None] = Field(
        None, description="set by the release itself when it continues-as-new: the state the next run resumes from"
    )
