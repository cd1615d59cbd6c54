"""The policy file's format: declared groups and an ordered list of allow / deny rules.

```yaml
version: 1
groups:
  sre-oncall: {description: the on-call rota, members: [alice]}   # members are added to the credential's groups
rules:
  - id: oncall-operates-prod
    effect: allow                     # allow | deny (deny wins over any allow)
    subjects: [group:sre-oncall]      # user:NAME, group:NAME or "*" (any verified identity)
    actions: [approve, pause, resume, abort]   # pitstop.access.Action values, or "*"
    runbooks: ["remediate-*", restart-service]  # glob patterns (fnmatch: * ? [..]), default ["*"]
    targets: {namespace: "prod-*", region: "eu-*"}   # each a pattern or list of patterns, default "*"
```

A request's target field that is None (the action names no namespace, say) matches only `*`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pitstop.access import Action

ANY = "*"
ACTION_NAMES = frozenset(a.value for a in Action)
GROUP_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]*$"


def _as_list(value: object) -> object:
    return [value] if isinstance(value, str) else value


class TargetPatterns(BaseModel):
    """Patterns a request's target must match, field by field (default `*`: anything, including no value)."""

    model_config = ConfigDict(extra="forbid")

    namespace: list[str] = Field(default_factory=lambda: [ANY], min_length=1, description="namespace patterns")
    service: list[str] = Field(default_factory=lambda: [ANY], min_length=1, description="service patterns")
    region: list[str] = Field(default_factory=lambda: [ANY], min_length=1, description="region patterns")

    _lists = field_validator("namespace", "service", "region", mode="before")(_as_list)

    @field_validator("namespace", "service", "region")
    @classmethod
    def _not_blank(cls, patterns: list[str]) -> list[str]:
        if any(not p.strip() for p in patterns):
            raise ValueError("a pattern must not be empty")
        return patterns


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="a name for audit records; default `rules[INDEX]`")
    effect: Literal["allow", "deny"] = Field("allow", description="deny wins over any allow")
    subjects: list[str] = Field(min_length=1, description="`user:NAME`, `group:NAME` or `*` (any verified identity)")
    actions: list[str] = Field(min_length=1, description="actions (" + ", ".join(a.value for a in Action) + ") or `*`")
    runbooks: list[str] = Field(default_factory=lambda: [ANY], min_length=1,
                                description="runbook name patterns (a release is `release`, an incident `incident`)")
    targets: TargetPatterns = Field(default_factory=TargetPatterns)
    description: str = Field("", description="why the rule exists; quoted in the decision's reason")

    _lists = field_validator("subjects", "actions", "runbooks", mode="before")(_as_list)

    @field_validator("subjects")
    @classmethod
    def _subjects(cls, subjects: list[str]) -> list[str]:
        for s in subjects:
            kind, _, name = s.partition(":")
            if s != ANY and (kind not in ("user", "group") or not name.strip()):
                raise ValueError(f"subject {s!r} must be `user:NAME`, `group:NAME` or `*`")
        return subjects

    @field_validator("actions")
    @classmethod
    def _actions(cls, actions: list[str]) -> list[str]:
        for a in actions:
            if a != ANY and a not in ACTION_NAMES:
                raise ValueError(f"unknown action {a!r}; known: {', '.join(sorted(ACTION_NAMES))} or *")
        return actions


class GroupSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    members: list[str] = Field(default_factory=list, description="users in this group besides the credential's say")


class PolicyFile(BaseModel):
    """The whole file. Rule order matters only for which rule an audit record names (the first that decided)."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    groups: dict[str, GroupSpec] = Field(default_factory=dict, description="every group a rule or runbook names")
    rules: list[Rule] = Field(default_factory=list)

    @field_validator("groups")
    @classmethod
    def _group_names(cls, groups: dict[str, GroupSpec]) -> dict[str, GroupSpec]:
        import re

        for name in groups:
            if not re.match(GROUP_NAME_PATTERN, name):
                raise ValueError(f"group name {name!r} must match {GROUP_NAME_PATTERN}")
        return groups

    @model_validator(mode="after")
    def _references(self) -> PolicyFile:
        seen: dict[str, int] = {}
        for i, rule in enumerate(self.rules):
            for j, s in enumerate(rule.subjects):
                if s.startswith("group:") and s[len("group:"):] not in self.groups:
                    raise PolicyReferenceError(("rules", i, "subjects", j),
                                               f"group {s[len('group:'):]!r} is not declared under `groups`")
            if rule.id is not None:
                if rule.id in seen:
                    raise PolicyReferenceError(("rules", i, "id"), f"duplicate rule id {rule.id!r} (also rules[{seen[rule.id]}])")
                seen[rule.id] = i
        return self

    def rule_id(self, index: int) -> str:
        return self.rules[index].id or f"rules[{index}]"


class PolicyReferenceError(ValueError):
    """A cross-field error whose location pydantic cannot know (reported with this location by the loader)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message
