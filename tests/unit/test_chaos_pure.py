"""The pure pieces of chaos runs: Chaos Toolkit's status and rollback rules, the journal's shape, the resilience
score, the blast-radius decisions, the allowlist checks and the child environment."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from pitstop.chaos.blast import call_path_conflicts, one_per_call_path, pod_share_refusals, pods_acted_on
from pitstop.chaos.journal import assemble_journal, journal_summary
from pitstop.chaos.model import (
    ChaosStatus, ChaosTarget, SloCheckResult, child_environment, inline_secrets, provider_refusals, referenced_env,
)
from pitstop.chaos.phases import (
    failed_runs, hypothesis_met, runs_after_hypothesis, should_roll_back, status_after_method, status_when_not_met,
)
from pitstop.chaos.score import hypothesis_checks, resilience_score, score_trend
from pitstop.dependency_graph import DependencyGraph, Edge, ServiceRef
from pitstop.runbook.reach import AuthorReach


@pytest.mark.parametrize(("strategy", "status", "deviated", "expected"), [
    ("default", ChaosStatus.COMPLETED, False, True),
    ("default", ChaosStatus.ABORTED, False, True),
    ("default", ChaosStatus.FAILED, False, False),
    ("default", ChaosStatus.INTERRUPTED, False, False),
    ("always", ChaosStatus.INTERRUPTED, False, True),
    ("never", ChaosStatus.COMPLETED, True, False),
    ("deviated", ChaosStatus.COMPLETED, True, True),
    ("deviated", ChaosStatus.COMPLETED, False, False),
])
def test_rollback_strategies_follow_chaos_toolkit(strategy: Any, status: ChaosStatus, deviated: bool, expected: bool) -> None:
    assert should_roll_back(strategy, status=status, deviated=deviated) is expected


def test_status_semantics() -> None:
    assert hypothesis_met(None) and hypothesis_met({"steady_state_met": True}) and not hypothesis_met({"steady_state_met": False})
    assert status_when_not_met({"probes": [{"status": "succeeded"}]}) is ChaosStatus.COMPLETED
    assert status_when_not_met({"probes": [{"status": "succeeded"}, {"status": "failed"}]}) is ChaosStatus.FAILED
    assert status_after_method(aborted=True, interrupted=False) is ChaosStatus.ABORTED
    assert status_after_method(aborted=True, interrupted=True) is ChaosStatus.INTERRUPTED
    assert status_after_method(aborted=False, interrupted=False) is ChaosStatus.COMPLETED
    assert not runs_after_hypothesis(ChaosStatus.ABORTED) and runs_after_hypothesis(ChaosStatus.COMPLETED)
    assert failed_runs([{"activity": {"name": "a"}, "status": "succeeded"}, {"activity": {"name": "b"}, "status": "failed"}]) == ["b"]


def test_the_journal_has_chaos_runs_keys_and_a_summary() -> None:
    start = datetime(2026, 12, 1, tzinfo=timezone.utc)
    journal = assemble_journal(
        experiment={"title": "t"}, started=start, ended=start + timedelta(seconds=3), status=ChaosStatus.COMPLETED,
        deviated=True, before={"steady_state_met": True, "probes": []}, after=None,
        runs=[{"status": "failed"}], rollbacks=[{"status": "succeeded"}], versions={"chaoslib_version": "1.44.0"},
    )
    assert list(journal) == ["chaoslib-version", "platform", "node", "experiment", "start", "status", "deviated",
                             "steady_states", "run", "rollbacks", "end", "duration"]
    assert journal["duration"] == 3.0 and journal["steady_states"]["during"] == []
    assert journal_summary(journal, score=0.5, rollback_failures=1) == (
        "'t' deviated, 1 activit(ies) (1 failed), 1 rollback(s) (1 FAILED), resilience 0.50")


def test_resilience_score_weighs_critical_three_and_warning_one() -> None:
    checks = [SloCheckResult(name="a", severity="critical", passed=True),
              SloCheckResult(name="b", severity="warning", passed=False),
              SloCheckResult(name="c", severity="critical", passed=False)]
    assert resilience_score(checks) == pytest.approx(3 / 7)
    assert resilience_score([]) is None
    after = {"probes": [{"activity": {"name": "ready"}, "tolerance_met": True, "status": "succeeded"}]}
    assert [(c.name, c.passed, c.severity) for c in hypothesis_checks(after)] == [("steady-state: ready", True, "critical")]
    assert score_trend([("t1", 1.0), ("t2", None), ("t3", 0.5)]) == "1.00 -> - -> 0.50"


def test_pod_share_is_limited() -> None:
    assert pods_acted_on({"qty": 2}, 4) == 2 and pods_acted_on({"all": True}, 4) == 4
    assert pods_acted_on({"qty": 30, "mode": "percentage"}, 4) == 2
    exp = {"method": [{"name": "kill", "type": "action", "provider": {
        "type": "python", "module": "chaosk8s.pod.actions", "func": "terminate_pods", "arguments": {"qty": 2}}}]}
    assert pod_share_refusals(exp, pods=4, max_share=0.5, target="t") == []
    assert pod_share_refusals(exp, pods=3, max_share=0.5, target="t") == [
        "activity 'kill' acts on 2 of t's 3 pod(s), more than max_pod_share 50%"]


def test_never_two_services_on_one_call_path() -> None:
    a, b, c, d = (ServiceRef(namespace="n", workload=w) for w in "abcd")
    graph = DependencyGraph(edges=[Edge(caller=a, callee=b, rps=1), Edge(caller=b, callee=c, rps=1)])
    assert call_path_conflicts(graph, [a, c, d]) == [(a, c)]
    assert one_per_call_path(graph, [a, b, c, d]) == [[a, d], [b], [c]]


def test_allowlists_secrets_and_the_child_environment() -> None:
    exp = {
        "configuration": {"url": {"type": "env", "key": "PITSTOP_RUNBOOK_URL"}, "plain": "x"},
        "secrets": {"k8s": {"token": {"type": "env", "key": "HOME_TOKEN"}, "inline": "s3cret"}},
        "method": [
            {"name": "ok", "provider": {"type": "python", "module": "chaosk8s.pod.actions"}},
            {"name": "no", "provider": {"type": "python", "module": "os"}},
            {"name": "sh", "provider": {"type": "process", "path": "/bin/sh"}},
        ],
    }
    assert provider_refusals(exp, modules=["chaosk8s.*"], processes=[]) == [
        "activity 'no': python module 'os' is not in security.chaos_provider_modules",
        "activity 'sh': process '/bin/sh' is not in security.chaos_process_providers",
    ]
    assert inline_secrets(exp) == ["secrets.k8s.inline"]
    assert referenced_env(exp) == ["HOME_TOKEN", "PITSTOP_RUNBOOK_URL"]
    reach = AuthorReach(env_allowlist=["PITSTOP_RUNBOOK_*"], allowed_hosts=[], debug_steps=False)
    env, refused = child_environment(exp, environ={"PITSTOP_RUNBOOK_URL": "u", "HOME_TOKEN": "t", "OTHER": "o"},
                                     env_problem=reach.env_problem, base={"PATH": "/bin"})
    assert env == {"PATH": "/bin", "PITSTOP_RUNBOOK_URL": "u"}
    assert len(refused) == 1 and "HOME_TOKEN" in refused[0]
    assert str(ChaosTarget.parse("eu-central/team/svc")) == "eu-central/team/svc"
    with pytest.raises(ValueError, match="REGION/NAMESPACE/SERVICE"):
        ChaosTarget.parse("team/svc")
