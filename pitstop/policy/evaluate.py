"""Compiled rules and the indexed evaluator (`Policy.decide`), beside the naive scan it is measured against.

Index: rules are filed under (action, subject) for each action they name (or `*`) and each subject they name
(`user:NAME`, `group:NAME`, `*`), and within that bucket under their exact runbook names or, for patterns, in
a short pattern list. A decision reads at most 2 actions x (2 + groups) subjects buckets, takes the bucket's
entries for the runbook's exact name plus its pattern rules, and matches only those candidates' patterns.
With realistic files (rules per team, per runbook) that is a handful of rules out of thousands.

Decision (`decide`): any matching deny rule -> denied by the first such rule (file order); else any matching
allow rule -> allowed by the first one; else denied by default. `scan_decide` gives the same answer by
testing every rule in order (the reference in tests and bench/policy.py).
"""

from __future__ import annotations

import re
from functools import lru_cache
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import translate

from pitstop.access import AccessDecision, AccessRequest, Action, Target

from .model import ANY, PolicyFile, Rule

GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Patterns:
    """A compiled list of glob patterns: `*` alone matches anything (even no value), else names or a regex."""

    any: bool
    names: frozenset[str]
    regex: re.Pattern[str] | None

    @classmethod
    def of(cls, patterns: Iterable[str]) -> Patterns:
        return _compiled_patterns(tuple(patterns))

    @classmethod
    def _build(cls, patterns: tuple[str, ...]) -> Patterns:
        if ANY in patterns:
            return cls(any=True, names=frozenset(), regex=None)
        globs = [p for p in patterns if GLOB_CHARS.search(p)]
        names = frozenset(p for p in patterns if not GLOB_CHARS.search(p))
        regex = re.compile("|".join(f"(?:{translate(g)})" for g in globs)) if globs else None
        return cls(any=False, names=names, regex=regex)

    def match(self, value: str | None) -> bool:
        if self.any:
            return True
        if value is None:
            return False
        return value in self.names or (self.regex is not None and self.regex.match(value) is not None)


@lru_cache(maxsize=4096)
def _compiled_patterns(patterns: tuple[str, ...]) -> Patterns:
    """Rules repeat patterns (`team-a-*` in many rules): compile each list once."""
    return Patterns._build(patterns)


@dataclass(frozen=True)
class CompiledRule:
    index: int
    id: str
    allow: bool
    description: str
    actions: frozenset[str]
    subjects: frozenset[str]
    runbooks: Patterns
    namespace: Patterns
    service: Patterns
    region: Patterns

    @classmethod
    def of(cls, index: int, rule: Rule) -> CompiledRule:
        return cls(
            index=index, id=rule.id or f"rules[{index}]", allow=rule.effect == "allow", description=rule.description,
            actions=frozenset(rule.actions), subjects=frozenset(rule.subjects),
            runbooks=Patterns.of(rule.runbooks), namespace=Patterns.of(rule.targets.namespace),
            service=Patterns.of(rule.targets.service), region=Patterns.of(rule.targets.region),
        )

    def matches(self, runbook: str, target: Target) -> bool:
        """Runbook and target only: the subject and action were matched by the index (or the scan)."""
        return (self.runbooks.match(runbook) and self.namespace.match(target.namespace)
                and self.service.match(target.service) and self.region.match(target.region))


@dataclass
class _Bucket:
    exact: dict[str, list[CompiledRule]] = field(default_factory=dict)
    patterns: list[CompiledRule] = field(default_factory=list)


class Policy:
    """A validated policy file, compiled and indexed. Immutable once built; safe to share between threads."""

    def __init__(self, document: PolicyFile) -> None:
        self.document = document
        self.rules = [CompiledRule.of(i, r) for i, r in enumerate(document.rules)]
        self._member_of: dict[str, frozenset[str]] = _memberships(document)
        self._index: dict[tuple[str, str], _Bucket] = {}
        for compiled, rule in zip(self.rules, document.rules, strict=True):
            self._file(compiled, rule)

    def _file(self, compiled: CompiledRule, rule: Rule) -> None:
        exact = [r for r in rule.runbooks if not GLOB_CHARS.search(r)]
        patterned = len(exact) < len(rule.runbooks)
        for action in set(rule.actions):
            for subject in set(rule.subjects):
                bucket = self._index.setdefault((action, subject), _Bucket())
                if patterned:
                    bucket.patterns.append(compiled)
                else:
                    for name in set(exact):
                        bucket.exact.setdefault(name, []).append(compiled)

    @property
    def groups(self) -> frozenset[str]:
        """The groups the file declares (what runbooks' and the catalog's `group:` approvers may name)."""
        return frozenset(self.document.groups)

    def groups_of(self, subject: str, groups: Iterable[str] = ()) -> frozenset[str]:
        """The credential's groups plus the groups this file makes `subject` a member of."""
        return frozenset(groups) | self._member_of.get(subject, frozenset())

    def candidates(self, subject: str, groups: frozenset[str], action: str, runbook: str) -> list[CompiledRule]:
        """The rules that may apply (right action, subject and runbook name or pattern), in file order."""
        keys = [ANY, f"user:{subject}", *(f"group:{g}" for g in groups)]
        found: dict[int, CompiledRule] = {}
        for action_key in (action, ANY):
            for key in keys:
                bucket = self._index.get((action_key, key))
                if bucket is None:
                    continue
                for rule in bucket.exact.get(runbook, ()):
                    found[rule.index] = rule
                for rule in bucket.patterns:
                    found[rule.index] = rule
        return [found[i] for i in sorted(found)]

    def decide(self, request: AccessRequest) -> AccessDecision:
        return self.decide_for(subject=request.identity.subject, groups=request.identity.groups,
                               action=request.action, runbook=request.runbook, target=request.target)

    def decide_for(self, *, subject: str, groups: Iterable[str], action: Action, runbook: str,
                   target: Target) -> AccessDecision:
        """`decide` for callers holding the parts (the update validators: subject and groups from the update)."""
        effective = self.groups_of(subject, groups)
        matching = [r for r in self.candidates(subject, effective, action.value, runbook) if r.matches(runbook, target)]
        return _verdict(matching, subject=subject, groups=effective, action=action, runbook=runbook, target=target)


def scan_decide(policy: Policy, request: AccessRequest) -> AccessDecision:
    """The same decision by testing every rule in file order (no index): the reference and the bench baseline."""
    subject, action, runbook, target = request.identity.subject, request.action, request.runbook, request.target
    groups = policy.groups_of(subject, request.identity.groups)
    subjects = {ANY, f"user:{subject}", *(f"group:{g}" for g in groups)}
    matching = [
        rule for rule in policy.rules
        if (ANY in rule.actions or action.value in rule.actions) and not subjects.isdisjoint(rule.subjects)
        and rule.matches(runbook, target)
    ]
    return _verdict(matching, subject=subject, groups=groups, action=action, runbook=runbook, target=target)


def _verdict(matching: list[CompiledRule], *, subject: str, groups: frozenset[str], action: Action, runbook: str,
             target: Target) -> AccessDecision:
    who = subject + (f" (groups: {', '.join(sorted(groups))})" if groups else " (no groups)")
    what = f"{action.value} on runbook {runbook!r}{describe_target(target)}"
    deny = next((r for r in matching if not r.allow), None)
    if deny is not None:
        why = f": {deny.description}" if deny.description else ""
        return AccessDecision(allowed=False, reason=f"{who} may not {what}: denied by rule {deny.id}{why}", rule=deny.id)
    allow = next((r for r in matching if r.allow), None)
    if allow is not None:
        return AccessDecision(allowed=True, reason=f"{who} may {what}: allowed by rule {allow.id}", rule=allow.id)
    return AccessDecision(allowed=False, reason=f"{who} may not {what}: no rule allows it (default deny)")


def describe_target(target: Target) -> str:
    parts = [f"{k}={v}" for k, v in (("namespace", target.namespace), ("service", target.service),
                                      ("region", target.region)) if v is not None]
    return f" ({', '.join(parts)})" if parts else ""


def _memberships(document: PolicyFile) -> dict[str, frozenset[str]]:
    member_of: dict[str, set[str]] = {}
    for name, spec in document.groups.items():
        for user in spec.members:
            member_of.setdefault(user, set()).add(name)
    return {user: frozenset(groups) for user, groups in member_of.items()}
