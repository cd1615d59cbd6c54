"""The release state machine: advance on passes, hold on no data, roll back at the failure threshold."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pitstop.analysis import Verdict
from pitstop.delivery.decisions import Action, AnalysisPolicy, AnalysisState, current_weight, next_action, run_verdict
from pitstop.delivery.spec import NoDataPolicy, ReleaseSpec, Strategy

P, F, I = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE


def policy(**overrides: object) -> AnalysisPolicy:
    values: dict[str, object] = dict(strategy=Strategy.CANARY, steps=[5, 10, 25, 50, 100], failure_threshold=2,
                                     iterations=1, no_data=NoDataPolicy.HOLD, progress_deadline_seconds=60)
    values.update(overrides)
    return AnalysisPolicy.model_validate(values)


def test_good_canary_walks_every_step_then_promotes() -> None:
    p, state, weights = policy(), AnalysisState(), []
    for t in range(10):
        decision = next_action(state, [P, P], p, now=float(t))
        state = decision.state
        if decision.action is Action.ADVANCE:
            weights.append(decision.weight)
        if decision.action is Action.PROMOTE:
            break
    assert weights == [10, 25, 50, 100]
    assert decision.action is Action.PROMOTE and state.total_runs == 5 and state.failed_runs == 0


def test_failed_runs_roll_back_at_threshold_and_never_advance() -> None:
    p = policy(failure_threshold=2)
    first = next_action(AnalysisState(), [P, F], p, now=1)
    assert first.action is Action.HOLD and first.state.failed_runs == 1
    second = next_action(first.state, [F], p, now=2)
    assert second.action is Action.ROLLBACK
    assert "threshold 2" in second.reason


def test_no_data_holds_and_never_passes_then_deadline_rolls_back() -> None:
    p = policy(progress_deadline_seconds=10)
    state = AnalysisState(last_progress_at=0)
    for t in range(1, 10):
        decision = next_action(state, [I, P], p, now=float(t))
        assert decision.action is Action.HOLD and decision.verdict is I
        state = decision.state
    assert state.step_index == 0 and state.passed_runs == 0
    assert next_action(state, [I], p, now=10).action is Action.ROLLBACK


def test_no_data_policy_fail_counts_as_failure() -> None:
    p = policy(no_data=NoDataPolicy.FAIL, failure_threshold=1)
    assert next_action(AnalysisState(), [I], p, now=1).action is Action.ROLLBACK


def test_empty_analysis_is_never_a_pass() -> None:
    assert run_verdict([], NoDataPolicy.HOLD) is I


def test_iterations_per_step_and_blue_green_promotes_after_iterations() -> None:
    p = policy(strategy=Strategy.BLUE_GREEN, iterations=3)
    state = AnalysisState()
    actions = []
    for t in range(3):
        d = next_action(state, [P], p, now=float(t))
        state, actions = d.state, actions + [d.action]
    assert actions == [Action.HOLD, Action.HOLD, Action.PROMOTE]
    assert current_weight(p, state) == 0


def test_pass_after_failure_keeps_failure_count() -> None:
    p = policy(failure_threshold=2)
    s = next_action(AnalysisState(), [F], p, now=1).state
    s = next_action(s, [P], p, now=2).state
    assert s.failed_runs == 1 and s.step_index == 1
    assert next_action(s, [F], p, now=3).action is Action.ROLLBACK


def test_release_spec_validation() -> None:
    spec = ReleaseSpec(service="ota-update", namespace="team-ota", image="registry/ota-update:v3.6.0")
    assert spec.new_version == "v3.6.0" and spec.steps == [5, 10, 25, 50, 100]
    with pytest.raises(ValidationError, match="increase"):
        ReleaseSpec(service="s", image="i:1", steps=[10, 5])
    with pytest.raises(ValidationError, match="headers"):
        ReleaseSpec(service="s", image="i:1", strategy="ab")
    with pytest.raises(ValidationError, match="at least one check"):
        ReleaseSpec(service="s", image="i:1", analysis={"success_rate_min": None, "latency_p95_max_ms": None})
    assert ReleaseSpec(service="s", image="i:1", analysis={"interval": "2s"}).analysis.interval == 2.0
