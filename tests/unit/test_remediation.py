"""Remediation catalog parsing and the pure decisions: matching, targets, ladder rungs, approval, breaker."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pitstop.alerts import Alert
from pitstop.config import SHIPPED_RUNBOOKS_DIR, Settings
from pitstop.runbook.reach import AuthorReach
from pitstop.runbook.validation import load_runbook_file
from pitstop.remediation import (
    CATALOG_FILE,
    Policy,
    RemediationError,
    breaker_decision,
    load_catalog,
    needs_approval,
    parse_catalog,
    plan_remediation,
    rung_applies,
)

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)


def alert(**labels: str) -> Alert:
    return Alert.model_validate(
        {"status": "firing", "labels": labels, "startsAt": T0.isoformat(), "fingerprint": "abc123"}
    )


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(SHIPPED_RUNBOOKS_DIR / CATALOG_FILE)


def test_shipped_catalog_rungs_name_shipped_runbooks(catalog) -> None:
    for rule in catalog.rules:
        for rung in rule.ladder:
            assert (SHIPPED_RUNBOOKS_DIR / f"{rung.runbook}.yaml").exists(), (rule.name, rung.runbook)


def test_crash_loop_plan_reads_service_from_pod_name(catalog) -> None:
    plan = plan_remediation(catalog, alert(alertname="CrashLooping", pod="checkout-7d9f8b6c5d-x2x7q",
                                           namespace="payments", region="eu-central", severity="warning"))
    assert plan is not None
    assert plan.rule == "crash-looping-pods"
    assert plan.target.key == "eu-central/payments/checkout"
    assert [r.name for r in plan.rungs] == ["rollback", "restart"]
    assert plan.rungs[0].inputs == {"service": "checkout", "namespace": "payments", "region": "eu-central"}
    assert plan.rungs[0].recovery_deadline_seconds == 300.0
    assert not plan.requires_approval and plan.policy.max_actions_per_hour == 3


def test_unmatched_alert_has_no_plan(catalog) -> None:
    assert plan_remediation(catalog, alert(alertname="SomethingElse")) is None


def test_missing_target_label_is_a_domain_error(catalog) -> None:
    with pytest.raises(RemediationError, match="service"):
        plan_remediation(catalog, alert(alertname="CrashLooping", namespace="payments", region="eu-central"))


def test_rule_policy_overrides_defaults_and_critical_needs_approval(catalog) -> None:
    plan = plan_remediation(catalog, alert(alertname="RegionDown", region="us-east", severity="critical"))
    assert plan is not None and plan.requires_approval
    assert (plan.rungs[0].runbook, plan.rungs[0].inputs) == ("failover-region", {"region": "us-east"})
    saturated = plan_remediation(catalog, alert(alertname="Saturation", pod="api-5f6d7c8b9a-abcde",
                                                namespace="shop", region="eu-central"))
    assert saturated is not None and saturated.policy.max_actions_per_hour == 2
    assert saturated.policy.on_lease_busy == "wait"


def test_label_matchers_and_regexes() -> None:
    cat = parse_catalog({
        "rules": [{
            "name": "r", "match": {"alertname": "A", "labels": {"team": "x"}, "labels_re": {"env": "prod-.*"}},
            "target": {"service": {"label": "svc"}}, "ladder": [{"name": "n", "runbook": "remediate-restart"}],
        }]
    })
    assert plan_remediation(cat, alert(alertname="A", team="x", env="prod-1", svc="s", region="r")) is not None
    assert plan_remediation(cat, alert(alertname="A", team="y", env="prod-1", svc="s", region="r")) is None
    assert plan_remediation(cat, alert(alertname="A", team="x", env="dev", svc="s", region="r")) is None


def test_invalid_catalog_names_the_field() -> None:
    with pytest.raises(RemediationError, match=r"rules\.0\.ladder"):
        parse_catalog({"rules": [{"name": "r", "match": {}, "target": {"service": {"label": "s"}}, "ladder": []}]})
    with pytest.raises(RemediationError, match="capture group"):
        parse_catalog({"rules": [{"name": "r", "match": {}, "target": {"service": {"label": "s", "regex": "x"}},
                                  "ladder": [{"name": "n", "runbook": "x"}]}]})


def test_rollback_rung_applies_only_after_a_recent_rollout(catalog) -> None:
    plan = plan_remediation(catalog, alert(alertname="CrashLooping", pod="checkout-7d9f8b6c5d-x2x7q",
                                           namespace="payments", region="eu-central"))
    rollback = plan.rungs[0]
    assert rung_applies(rollback, alert_started_at=T0, last_rollout_at=T0 - timedelta(minutes=5)).applies
    assert not rung_applies(rollback, alert_started_at=T0, last_rollout_at=None).applies
    assert not rung_applies(rollback, alert_started_at=T0, last_rollout_at=T0 + timedelta(seconds=1)).applies
    assert not rung_applies(rollback, alert_started_at=T0, last_rollout_at=T0 - timedelta(hours=2)).applies
    assert rung_applies(plan.rungs[1], alert_started_at=T0, last_rollout_at=None).applies


def test_approval_threshold() -> None:
    policy = Policy(approval_above_severity="page")
    assert needs_approval(policy, "critical")
    assert not needs_approval(policy, "page")
    assert not needs_approval(Policy(), "critical")


def test_circuit_breaker_sliding_hour() -> None:
    times = [T0 - timedelta(minutes=m) for m in (50, 30, 10)]
    closed = breaker_decision(times[:2], now=T0, max_per_hour=3)
    assert closed.allowed and closed.actions_last_hour == 2
    open_ = breaker_decision(times, now=T0, max_per_hour=3)
    assert not open_.allowed and open_.retry_after_seconds == pytest.approx(600.0)
    assert "circuit open" in open_.reason
    assert breaker_decision(times, now=T0 + timedelta(minutes=11), max_per_hour=3).allowed
    assert not breaker_decision([], now=T0, max_per_hour=0).allowed


def test_the_target_kind_follows_the_rule(catalog) -> None:
    """Evidence is gathered by kind: a node alert is about a Node, a region outage about the Region (its
    failover's target, so the incident's lease is the failover runbook's), everything else about a Deployment."""
    node = plan_remediation(catalog, alert(alertname="NodeNotReady", node="kwok-node-3", region="us-east"))
    region = plan_remediation(catalog, alert(alertname="RegionDown", region="us-east", severity="critical"))
    crash = plan_remediation(catalog, alert(alertname="CrashLooping", pod="checkout-7d9f8b6c5d-x2x7q",
                                            namespace="payments", region="eu-central"))
    assert node is not None and (node.target.kind, node.target.service) == ("Node", "kwok-node-3")
    assert region is not None and (region.target.kind, region.target.region) == ("Region", "us-east")
    failover = load_runbook_file(SHIPPED_RUNBOOKS_DIR / "failover-region.yaml", reach=AuthorReach.from_settings(Settings()))
    assert failover.target is not None
    assert (region.target.service, region.target.namespace) == (failover.target.service, failover.target.namespace)
    assert crash is not None and crash.target.kind == "Deployment"


def test_a_target_kind_outside_the_known_ones_names_the_field() -> None:
    rule = {"name": "odd", "match": {"alertname": "Odd"}, "target": {"kind": "StatefulSet", "service": {"label": "pod"}},
            "ladder": [{"name": "restart", "runbook": "remediate-restart"}]}
    with pytest.raises(RemediationError, match=r"catalog.yaml: rules\.0\.target\.kind"):
        parse_catalog({"rules": [rule]}, source="catalog.yaml")
