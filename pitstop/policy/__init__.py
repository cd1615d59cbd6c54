"""The access policy: who (users, groups) may do which action on which runbooks and targets.

- `model`    the policy file's format (pydantic; `policy.schema.json` is generated from it)
- `loader`   `load_policy(path)` / `parse_policy(text)`: YAML -> validated `Policy`, errors name file, rule, field
- `evaluate` compiled rules, the indexed evaluator (`Policy.decide`) and the naive scan it is measured against
- `guard`    the policy the worker installed, as the workflows' update validators see it

Semantics (docs/policy.md): a request is allowed when at least one `allow` rule matches it and no `deny` rule
does (deny wins); nothing matching = denied (default deny).
"""

from .evaluate import Policy, scan_decide
from .loader import PolicyError, build_policy, load_policy, parse_policy
from .model import PolicyFile, Rule

__all__ = ["Policy", "PolicyError", "build_policy", "PolicyFile", "Rule", "load_policy", "parse_policy", "scan_decide"]
