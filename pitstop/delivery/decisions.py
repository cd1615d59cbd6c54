"""The release state machine as pure functions: after each analysis run, `next_action` decides.

Rules (flagger's canary analysis, made explicit):
- a run FAILS when any check fails (or, with `no_data: fail`, is inconclusive); each failed run counts toward
  `failure_threshold`, and reaching it rolls back — so a bad release is rolled back after
  `interval x failure_threshold`, as in Flagger;
- a run is INCONCLUSIVE when a check has no data or Prometheus is unreachable (`no_data: hold`): it never
  counts as a pass; the release holds, and rolls back once `progress_deadline` passes without progress;
- a run PASSES when every check passes; after `iterations` passing runs the canary advances to the next step
  weight, and after the last step (or, for blue-green and A/B, after `iterations` passing runs) it promotes.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel, Field

from pitstop.analysis import Verdict

from .spec import NoDataPolicy, ReleaseSpec, Strategy


class Action(StrEnum):
    ADVANCE = "advance"
    HOLD = "hold"
    ROLLBACK = "rollback"
    PROMOTE = "promote"


class AnalysisPolicy(BaseModel):
    strategy: Strategy
    steps: list[int]
    failure_threshold: int
    iterations: int
    no_data: NoDataPolicy
    progress_deadline_seconds: float

    @classmethod
    def of(cls, spec: ReleaseSpec) -> AnalysisPolicy:
        return cls(
            strategy=spec.strategy,
            steps=list(spec.steps),
            failure_threshold=spec.analysis.failure_threshold,
            iterations=spec.analysis.iterations,
            no_data=spec.analysis.no_data,
            progress_deadline_seconds=spec.progress_deadline,
        )


class AnalysisState(BaseModel):
    """Where the analysis stands. Times are seconds on the workflow's clock."""

    step_index: int = Field(0, description="canary: index of the current weight in `steps`")
    passed_runs: int = Field(0, description="passing runs at the current step")
    failed_runs: int = Field(0, description="failed runs so far (toward failure_threshold)")
    inconclusive_runs: int = 0
    total_runs: int = 0
    last_progress_at: float = Field(0.0, description="when the release last advanced or passed a run")


class Decision(BaseModel):
    action: Action
    reason: str
    verdict: Verdict = Field(description="the run's overall verdict")
    state: AnalysisState = Field(description="the state after this run")
    weight: int | None = Field(None, description="canary weight to set (ADVANCE)")


def run_verdict(verdicts: Sequence[Verdict], no_data: NoDataPolicy) -> Verdict:
    """One run's verdict: any fail fails; any inconclusive is inconclusive (or a fail under `no_data: fail`);
    no checks at all is inconclusive — an empty analysis never passes."""
    if not verdicts or any(v is Verdict.FAIL for v in verdicts):
        return Verdict.FAIL if verdicts else Verdict.INCONCLUSIVE
    if any(v is Verdict.INCONCLUSIVE for v in verdicts):
        return Verdict.FAIL if no_data is NoDataPolicy.FAIL else Verdict.INCONCLUSIVE
    return Verdict.PASS


def current_weight(policy: AnalysisPolicy, state: AnalysisState) -> int:
    """Percent of the default route on the new version while analysing."""
    if policy.strategy is Strategy.CANARY:
        return policy.steps[min(state.step_index, len(policy.steps) - 1)]
    return 0


def deadline_passed(policy: AnalysisPolicy, state: AnalysisState, now: float) -> bool:
    return now - state.last_progress_at >= policy.progress_deadline_seconds


def next_action(state: AnalysisState, verdicts: Sequence[Verdict], policy: AnalysisPolicy, *, now: float) -> Decision:
    """Decide what follows one analysis run with these check verdicts."""
    verdict = run_verdict(verdicts, policy.no_data)
    state = state.model_copy(update={"total_runs": state.total_runs + 1})
    if verdict is Verdict.FAIL:
        state.failed_runs += 1
        if state.failed_runs >= policy.failure_threshold:
            return Decision(
                action=Action.ROLLBACK,
                verdict=verdict,
                state=state,
                reason=f"{state.failed_runs} failed analysis runs reached the threshold {policy.failure_threshold}",
            )
        if deadline_passed(policy, state, now):
            return _deadline(state, verdict, policy)
        return Decision(
            action=Action.HOLD,
            verdict=verdict,
            state=state,
            reason=f"analysis failed ({state.failed_runs}/{policy.failure_threshold} before rollback); not advancing",
        )
    if verdict is Verdict.INCONCLUSIVE:
        state.inconclusive_runs += 1
        if deadline_passed(policy, state, now):
            return _deadline(state, verdict, policy)
        return Decision(
            action=Action.HOLD, verdict=verdict, state=state, reason="analysis inconclusive (no data); holding"
        )
    state.passed_runs += 1
    state.last_progress_at = now
    if state.passed_runs < policy.iterations:
        return Decision(
            action=Action.HOLD,
            verdict=verdict,
            state=state,
            reason=f"analysis passed ({state.passed_runs}/{policy.iterations} runs at this step)",
        )
    if policy.strategy is Strategy.CANARY and state.step_index < len(policy.steps) - 1:
        state.step_index += 1
        state.passed_runs = 0
        weight = policy.steps[state.step_index]
        return Decision(
            action=Action.ADVANCE, verdict=verdict, state=state, weight=weight, reason=f"analysis passed; advancing to {weight}%"
        )
    return Decision(action=Action.PROMOTE, verdict=verdict, state=state, reason="analysis passed at the last step; promoting")


def _deadline(state: AnalysisState, verdict: Verdict, policy: AnalysisPolicy) -> Decision:
    return Decision(
        action=Action.ROLLBACK,
        verdict=verdict,
        state=state,
        reason=f"no progress within the progress deadline ({policy.progress_deadline_seconds:g}s)",
    )
