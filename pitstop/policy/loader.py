"""Read and validate a policy file: YAML (the bounded loader) -> `PolicyFile` -> compiled, indexed `Policy`.

Every error is a `PolicyError` whose text names the file, the rule's index (and id) and the field:
`deploy/policy.yaml: rules[3] (oncall-operates).targets.namespace: a pattern must not be empty`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pitstop.bounded_yaml import YamlRefused, load_file, load_text

from .evaluate import Policy
from .model import PolicyFile, PolicyReferenceError


class PolicyError(ValueError):
    """The policy file is unreadable or invalid; `problems` lists `location: message` lines."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + f"\n{source}: ".join(problems))
        self.source = source
        self.problems = problems


def load_policy(path: Path) -> Policy:
    """The policy in `path`, validated and indexed; raises `PolicyError` naming the file, rule and field."""
    try:
        data = load_file(path)
    except (OSError, YamlRefused) as exc:
        raise PolicyError(str(path), [str(exc).removeprefix(f"{path}:").strip() or str(exc)]) from exc
    return build_policy(data, source=str(path))


def parse_policy(text: str, *, source: str = "<policy>") -> Policy:
    try:
        data = load_text(text, source=source)
    except YamlRefused as exc:
        raise PolicyError(source, [str(exc).removeprefix(f"{source}:")]) from exc
    return build_policy(data, source=source)


def build_policy(data: Any, *, source: str = "<policy>") -> Policy:
    """A policy from already-parsed data (a generated policy, the bench); same errors as `load_policy`."""
    if not isinstance(data, dict):
        raise PolicyError(source, ["the file must be a mapping with `rules:` (and optionally `groups:`, `version:`)"])
    try:
        document = PolicyFile.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(source, [_problem(err, data) for err in exc.errors()]) from None
    return Policy(document)


def _problem(err: Any, data: dict[str, Any]) -> str:
    loc: tuple[Any, ...] = tuple(err["loc"])
    message = str(err["msg"])
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, PolicyReferenceError):
        loc, message = cause.loc, cause.message
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    return f"{_location(loc, data)}: {message}"


def _location(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    """`rules[3] (rule-id).targets.namespace[0]`: indexes in brackets, the rule's id beside its index."""
    text = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            text += f"[{part}]"
            if i == 1 and loc[0] == "rules":
                rules = data.get("rules")
                rule = rules[part] if isinstance(rules, list) and part < len(rules) else None
                if isinstance(rule, dict) and isinstance(rule.get("id"), str):
                    text += f" ({rule['id']})"
        else:
            text += ("." if text else "") + str(part)
    return text or "(top level)"
