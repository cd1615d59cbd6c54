"""Models crossing the workflow/activity boundary for releases, and the live status workflows expose.

Activity inputs carry the `ReleaseTarget` (which objects, in which region) and absolute desired state;
`ReleaseSnapshot` is what the release recorded before its first change — rollback writes it back.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from pitstop.analysis import Measurement, Verdict

from .promql import CheckQuery
from .spec import ReleaseTarget

JsonObject = dict[str, Any]


class ReleasePhase(StrEnum):
    PENDING = "pending"
    WAITING_FOR_LEASE = "waiting_for_lease"
    CHECKING_BUDGET = "checking_budget"
    INITIALIZING = "initializing"  # snapshot recorded, candidate deploying
    PROGRESSING = "progressing"  # analysis loop, weights shifting
    AWAITING_APPROVAL = "awaiting_approval"
    PROMOTING = "promoting"  # candidate scaled up, all traffic to the new version
    PROMOTED = "promoted"  # old version kept warm; instant rollback possible
    FINALIZING = "finalizing"  # new version becomes stable, old retired
    SUCCEEDED = "succeeded"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"  # could not even start (budget gate, invalid target) — nothing changed

    @property
    def terminal(self) -> bool:
        return self in (ReleasePhase.SUCCEEDED, ReleasePhase.ROLLED_BACK, ReleasePhase.FAILED)


# ---------------------------------------------------------------- activity inputs / outputs


class TargetInput(BaseModel):
    target: ReleaseTarget


class DeploymentSnapshot(BaseModel):
    """What of a Deployment a rollback restores."""

    name: str
    replicas: int
    template: JsonObject
    selector: JsonObject = Field(default_factory=dict)
    version: str = ""
    image: str = ""
    pending_template: str = Field(
        "", description="released from git: the hash of git's new template the paused Deployment holds (`template` is "
                        "the one its pods run, what a rollback writes back and reverts git to); empty otherwise")


class ReleaseSnapshot(BaseModel):
    """Routes, subsets and scale before the release's first change."""

    http: list[JsonObject] = Field(description="VirtualService spec.http")
    subsets: list[JsonObject] = Field(description="DestinationRule spec.subsets")
    stable: DeploymentSnapshot
    candidate: DeploymentSnapshot | None = Field(None, description="the `<name>-canary` Deployment, if it existed")
    weights: dict[str, int] = Field(default_factory=dict, description="release route: subset -> weight")


class DeployCandidateInput(BaseModel):
    target: ReleaseTarget
    image: str
    version: str
    replicas: int
    subsets: list[JsonObject] = Field(description="DestinationRule subsets to set (canary -> new version)")
    deadline_seconds: float = Field(description="the candidate must be ready within this")
    release_id: str = ""
    poll_seconds: float = 0.5
    resources: dict[str, JsonObject] = Field(
        default_factory=dict, description="container -> resources merged into the candidate (rightsizing)"
    )


class CandidateStatus(BaseModel):
    name: str
    replicas: int
    ready_replicas: int
    created: bool = False
    waited_seconds: float = 0.0


class RoutesInput(BaseModel):
    target: ReleaseTarget
    http: list[JsonObject]


class RoutesResult(BaseModel):
    changed: bool
    weights: dict[str, int] = Field(default_factory=dict)


class SubsetsInput(BaseModel):
    target: ReleaseTarget
    subsets: list[JsonObject]


class ScaleCandidateInput(BaseModel):
    target: ReleaseTarget
    replicas: int
    deadline_seconds: float = 600.0
    poll_seconds: float = 0.5


class RestoreInput(BaseModel):
    target: ReleaseTarget
    snapshot: ReleaseSnapshot


class RestoreResult(BaseModel):
    routes_changed: bool
    weights: dict[str, int]
    candidate: str = Field(description="deleted | restored | absent")


class GitRevert(BaseModel):
    """A rollback of a release from git, in git: the revert commit, on the engine's branch (`direct`, applied by the
    engine after `engine_apply_seconds`) or on a branch of its own for a human to merge (`branch`)."""

    repository: str
    commit: str
    branch: str
    created: bool
    policy: str
    engine_apply_seconds: float | None = None
    note: str = ""

    def describe(self) -> str:
        where = ("applied" if self.engine_apply_seconds is not None
                 else "not applied yet" if self.policy == "direct" else "proposed")
        return f"revert {self.commit[:12]} on {self.repository} {self.branch} ({where})"


class FinalizeInput(BaseModel):
    target: ReleaseTarget
    deadline_seconds: float = 600.0
    poll_seconds: float = 0.5


class GitPromotion(BaseModel):
    """A git-managed stable Deployment's promotion in git: the commit holding it, how long the engine took to
    apply it (None: no engine configured, or it did not apply within its timeout; see `note`)."""

    repository: str
    commit: str
    created: bool
    engine_apply_seconds: float | None = None
    note: str = ""


class FinalizeResult(BaseModel):
    image: str
    version: str
    ready_replicas: int
    git: GitPromotion | None = None


class RetireInput(BaseModel):
    target: ReleaseTarget
    snapshot: ReleaseSnapshot


class MeasureInput(BaseModel):
    checks: list[CheckQuery]


class MeasureResult(BaseModel):
    measurements: list[Measurement]


# ---------------------------------------------------------------- live status


class MeasurementRecord(BaseModel):
    """One check of one analysis run: what was asked, what came back, what it means."""

    run: int
    at: str = Field(description="ISO time on the workflow clock")
    region: str
    weight: int
    check: str
    query: str
    value: float | None = None
    error: str | None = None
    threshold: str
    verdict: Verdict
    explanation: str


class ReleaseEvent(BaseModel):
    at: str
    phase: ReleasePhase
    message: str


class ReleaseStatus(BaseModel):
    """What `pitstop release status` and the `status` query show."""

    service: str
    namespace: str
    region: str
    strategy: str
    phase: ReleasePhase
    new_version: str
    stable_version: str = ""
    weights: dict[str, int] = Field(default_factory=dict, description="release route: subset -> weight")
    canary_weight: int = 0
    steps: list[int] = Field(default_factory=list)
    step_index: int = 0
    analysis_runs: int = 0
    failed_runs: int = 0
    failure_threshold: int = 0
    last_verdict: Verdict | None = None
    last_verdicts: list[MeasurementRecord] = Field(default_factory=list, description="checks of the latest run")
    message: str = ""
    events: list[ReleaseEvent] = Field(default_factory=list)
    awaiting_approval: bool = False
    rollback_reason: str = ""
    run_number: int = Field(1, description="run of the continue-as-new chain (1: no continue-as-new yet)")
    git_revert: GitRevert | None = Field(None, description="a rolled-back release from git: its revert in git")
    measurements_dropped: int = Field(0, description="oldest measurement records no longer kept (query `measurements`)")


class ReleaseOutcome(BaseModel):
    """Result of `ProgressiveRelease`."""

    region: str
    phase: ReleasePhase
    promoted: bool
    rolled_back: bool
    reason: str = ""
    analysis_runs: int = 0
    failed_runs: int = 0
    failed_checks: int = Field(0, description="individual checks with a fail verdict")
    new_version: str = ""
    changed: bool = Field(default=False, description="the new version is live (runbook step result)")
    summary: str = Field(default="", description="one human line, e.g. for the runbook step's audit line")
    git_revert: GitRevert | None = Field(None, description="a rolled-back release from git: its revert in git")


def release_summary(outcome: ReleaseOutcome) -> str:
    """E.g. `promoted 2.0.0 in eu-central after 7 analysis runs (0 failed)`."""
    runs = f"after {outcome.analysis_runs} analysis run{'s' if outcome.analysis_runs != 1 else ''} ({outcome.failed_runs} failed)"
    version = f" {outcome.new_version}" if outcome.new_version else ""
    if outcome.promoted:
        return f"promoted{version} in {outcome.region} {runs}"
    if outcome.rolled_back:
        revert = f"; {outcome.git_revert.describe()}" if outcome.git_revert else ""
        return f"rolled back{version} in {outcome.region} {runs}: {outcome.reason}{revert}"
    return f"release{version} in {outcome.region} {outcome.phase.value}: {outcome.reason}"


class RegionResult(BaseModel):
    """Signal from a region's release to its `RegionWaves` parent."""

    region: str
    phase: ReleasePhase
    reason: str = ""


class WavesPhase(StrEnum):
    """Where `RegionWaves` is: region after region, then done or unwinding in reverse order."""

    PENDING = "pending"
    PROGRESSING = "progressing"
    SUCCEEDED = "succeeded"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"


class WavesStatus(BaseModel):
    phase: WavesPhase
    regions: list[str]
    current_region: str = ""
    region_phases: dict[str, ReleasePhase] = Field(default_factory=dict)
    region_weights: dict[str, dict[str, int]] = Field(default_factory=dict)
    promoted_regions: list[str] = Field(default_factory=list)
    rolled_back_regions: list[str] = Field(default_factory=list)
    message: str = ""
    awaiting_approval: bool = False


class WavesOutcome(BaseModel):
    phase: WavesPhase
    promoted_regions: list[str] = Field(default_factory=list)
    rolled_back_regions: list[str] = Field(default_factory=list)
    failed_region: str = ""
    reason: str = ""
    regions: dict[str, ReleaseOutcome] = Field(default_factory=dict)
    changed: bool = Field(default=False, description="every region runs the new version (runbook step result)")
    summary: str = Field(default="", description="one human line, e.g. for the runbook step's audit line")


def waves_summary(outcome: WavesOutcome) -> str:
    """E.g. `promoted 2.0.0 in eu-central, us-east (12 analysis runs, 0 failed)`."""
    version = next((o.new_version for o in outcome.regions.values() if o.new_version), "")
    version = f" {version}" if version else ""
    runs = sum(o.analysis_runs for o in outcome.regions.values())
    failed = sum(o.failed_runs for o in outcome.regions.values())
    if outcome.phase is WavesPhase.SUCCEEDED:
        return f"promoted{version} in {', '.join(outcome.promoted_regions)} ({runs} analysis runs, {failed} failed)"
    where = outcome.failed_region or "all regions"
    rolled = ", ".join(outcome.rolled_back_regions) or "none"
    return f"halted{version} in {where}: {outcome.reason}; rolled back {rolled}"


class ApproveRequest(BaseModel):
    identity: str = ""
    comment: str = ""
    groups: list[str] = Field(default_factory=list, description="the caller's verified groups (set by the pitstop API)")


class RollbackRequest(BaseModel):
    reason: str = "manual rollback"
    identity: str = ""
    groups: list[str] = Field(default_factory=list, description="the caller's verified groups (set by the pitstop API)")
