"""The access policy: evaluator semantics (allow, deny wins, patterns, groups, default deny), the index
against the naive scan, the loader's errors, and the approver lists of approval steps."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from pitstop.access import AccessRequest, Action, Identity, Target
from pitstop.policy import PolicyError, build_policy, load_policy, parse_policy, scan_decide
from pitstop.policy import guard

POLICY = """
version: 1
groups:
  sre-oncall: {description: on-call rota, members: [carol]}
  sre-lead: {}
  release-managers: {}
rules:
  - id: oncall-operates
    subjects: [group:sre-oncall]
    actions: [approve, pause, resume, abort]
    runbooks: ["remediate-*", restart-service]
  - id: leads-everything
    subjects: [group:sre-lead]
    actions: ["*"]
  - id: releases
    subjects: [group:release-managers, user:dave]
    actions: [release.promote, release.rollback]
    runbooks: [release]
    targets: {namespace: ["shop", "pay-*"], region: "eu-*"}
  - id: no-kube-system
    effect: deny
    subjects: ["*"]
    actions: ["*"]
    targets: {namespace: kube-system}
    description: nobody operates kube-system through pitstop
  - id: not-mallory
    effect: deny
    subjects: [user:mallory]
    actions: ["*"]
"""


def who(subject: str, *groups: str) -> Identity:
    return Identity(subject=subject, groups=frozenset(groups), method="token-file")


def ask(identity: Identity, action: Action, runbook: str, **target: str) -> AccessRequest:
    return AccessRequest(identity=identity, action=action, runbook=runbook, target=Target(**target))


@pytest.fixture(scope="module")
def policy():  # type: ignore[no-untyped-def]
    return parse_policy(POLICY, source="test-policy.yaml")


def test_allow_by_group_and_pattern(policy) -> None:  # type: ignore[no-untyped-def]
    decision = policy.decide(ask(who("alice", "sre-oncall"), Action.APPROVE, "remediate-restart", namespace="shop"))
    assert decision.allowed and decision.rule == "oncall-operates"
    assert "alice (groups: sre-oncall) may approve on runbook 'remediate-restart'" in decision.reason


def test_default_deny_names_who_and_what(policy) -> None:  # type: ignore[no-untyped-def]
    decision = policy.decide(ask(who("alice", "sre-oncall"), Action.START, "remediate-restart", namespace="shop"))
    assert not decision.allowed and decision.rule is None
    assert decision.reason == ("alice (groups: sre-oncall) may not start on runbook 'remediate-restart' "
                               "(namespace=shop): no rule allows it (default deny)")


def test_unknown_runbook_and_action_not_named_are_denied(policy) -> None:  # type: ignore[no-untyped-def]
    assert not policy.decide(ask(who("alice", "sre-oncall"), Action.APPROVE, "canary")).allowed
    assert not policy.decide(ask(who("alice", "sre-oncall"), Action.SCHEDULE_CHANGE, "restart-service")).allowed
    assert not policy.decide(ask(who("nobody"), Action.APPROVE, "restart-service")).allowed


def test_deny_wins_over_allow(policy) -> None:  # type: ignore[no-untyped-def]
    decision = policy.decide(ask(who("lee", "sre-lead"), Action.ABORT, "hello", namespace="kube-system"))
    assert not decision.allowed and decision.rule == "no-kube-system"
    assert decision.reason.endswith("denied by rule no-kube-system: nobody operates kube-system through pitstop")
    assert not policy.decide(ask(who("mallory", "sre-lead"), Action.ABORT, "hello")).allowed
    assert policy.decide(ask(who("lee", "sre-lead"), Action.ABORT, "hello", namespace="shop")).allowed


def test_target_patterns_and_missing_fields(policy) -> None:  # type: ignore[no-untyped-def]
    dave = who("dave")
    assert policy.decide(ask(dave, Action.RELEASE_PROMOTE, "release", namespace="pay-eu", region="eu-central")).allowed
    assert policy.decide(ask(dave, Action.RELEASE_ROLLBACK, "release", namespace="shop", region="eu-west")).allowed
    assert not policy.decide(ask(dave, Action.RELEASE_PROMOTE, "release", namespace="shopping", region="eu-central")).allowed
    assert not policy.decide(ask(dave, Action.RELEASE_PROMOTE, "release", namespace="shop", region="us-east")).allowed
    # a target field the request does not name matches only `*`
    assert not policy.decide(ask(dave, Action.RELEASE_PROMOTE, "release", namespace="shop")).allowed


def test_members_declared_in_the_file_count_as_groups(policy) -> None:  # type: ignore[no-untyped-def]
    decision = policy.decide(ask(who("carol"), Action.PAUSE, "restart-service"))
    assert decision.allowed and "carol (groups: sre-oncall)" in decision.reason


def test_index_agrees_with_the_scan_on_random_requests() -> None:
    rng = random.Random(7)
    actions = [a.value for a in Action] + ["*"]
    groups = [f"g{i}" for i in range(6)]
    rules = []
    for i in range(200):
        subjects = ["*"] if rng.random() < 0.02 else rng.choice([
            [f"user:u{rng.randrange(8)}"], [f"group:{rng.choice(groups)}"],
            [f"user:u{rng.randrange(8)}", f"group:{rng.choice(groups)}"]])
        runbooks = rng.choice([["*"], [f"rb{rng.randrange(10)}"], [f"rb{rng.randrange(3)}*"], ["rb1", "x?"]])
        targets = {k: rng.choice(["*", "a*", "ab", "[ab]c"]) for k in ("namespace", "service", "region")
                   if rng.random() < 0.3}
        rules.append({"id": f"r{i}", "effect": "deny" if rng.random() < 0.1 else "allow", "subjects": subjects,
                      "actions": rng.sample(actions, rng.randrange(1, 3)), "runbooks": runbooks, "targets": targets})
    policy = build_policy({"groups": {g: {} for g in groups}, "rules": rules})
    outcomes = set()
    for _ in range(2000):
        request = AccessRequest(
            identity=who(f"u{rng.randrange(10)}", *rng.sample(groups, rng.randrange(0, 3))),
            action=rng.choice(list(Action)), runbook=rng.choice([f"rb{rng.randrange(12)}", "xy", "rb10"]),
            target=Target(**{k: rng.choice(["a", "ab", "ac", "bc", "zz", None]) for k in ("namespace", "service", "region")}),
        )
        indexed, scanned = policy.decide(request), scan_decide(policy, request)
        assert indexed == scanned, request
        outcomes.add((indexed.allowed, indexed.rule is None))
    assert outcomes == {(True, False), (False, False), (False, True)}  # allowed, denied by a rule, default deny


def test_index_looks_at_few_candidates() -> None:
    rules = [{"id": f"r{i}", "subjects": [f"user:u{i}"], "actions": ["approve"], "runbooks": [f"rb{i % 50}"]}
             for i in range(5000)]
    policy = build_policy({"rules": rules})
    assert [r.id for r in policy.candidates("u7", frozenset(), "approve", "rb7")] == ["r7"]
    assert policy.candidates("u7", frozenset(), "abort", "rb7") == []


@pytest.mark.parametrize(("text", "expected"), [
    ("rules:\n  - {id: a, subjects: [group:ops], actions: [approve]}\n",
     "f.yaml: rules[0] (a).subjects[0]: group 'ops' is not declared under `groups`"),
    ("rules:\n  - {subjects: ['*'], actions: [approve]}\n  - {id: b, subjects: ['*'], actions: [aprove]}\n",
     "f.yaml: rules[1] (b).actions: unknown action 'aprove'"),
    ("rules:\n  - {id: c, subjects: [alice], actions: [approve]}\n",
     "f.yaml: rules[0] (c).subjects: subject 'alice' must be `user:NAME`, `group:NAME` or `*`"),
    ("rules:\n  - {id: d, subjects: ['*'], actions: [approve], targets: {namespace: ''}}\n",
     "f.yaml: rules[0] (d).targets.namespace: a pattern must not be empty"),
    ("rules:\n  - {id: e, subjects: ['*'], actions: [approve], targets: {cluster: x}}\n",
     "f.yaml: rules[0] (e).targets.cluster: Extra inputs are not permitted"),
    ("rules:\n  - {id: f, subjects: ['*'], actions: [approve]}\n  - {id: f, subjects: ['*'], actions: [abort]}\n",
     "f.yaml: rules[1] (f).id: duplicate rule id 'f' (also rules[0])"),
    ("rules:\n  - {id: g, subjects: ['*']}\n", "f.yaml: rules[0] (g).actions: Field required"),
    ("- just a list\n", "f.yaml: the file must be a mapping"),
    ("rules: [unclosed\n", "f.yaml:"),
])
def test_loader_errors_name_file_rule_and_field(text: str, expected: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, source="f.yaml")
    assert str(caught.value).startswith(expected), str(caught.value)


def test_load_policy_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"^.*nope\.yaml: "):
        load_policy(tmp_path / "nope.yaml")


def test_approver_lists_name_users_and_groups(policy) -> None:  # type: ignore[no-untyped-def]
    guard.install(policy)
    try:
        assert guard.approver_allowed(["group:sre-oncall"], identity="carol", groups=[])  # member by the file
        assert guard.approver_allowed(["group:sre-lead"], identity="x", groups=["sre-lead"])
        assert guard.approver_allowed(["user:bob", "alice"], identity="alice", groups=[])
        assert not guard.approver_allowed(["group:sre-lead", "user:bob"], identity="alice", groups=["sre-oncall"])
        assert guard.approver_allowed([], identity="anyone", groups=[])
    finally:
        guard.install(None)
