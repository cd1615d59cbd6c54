"""The capacity policy file: per-team overrides of the strategy and its settings (YAML, checked before use).

```yaml
default:              # every team unless overridden
  strategy: simple    # or vpa; otherwise the strategy asked for (CLI --strategy, runbook input)
  simple: {cpu_percentile: 95}
teams:
  team-analytics:     # the team label (pitstop.dev/team) or the namespace
    strategy: vpa
    vpa: {target_percentile: 0.95, min_memory_mib: 512}
  team-identity: {exclude: true}
  team-payments:
    closed_loop: {enabled: true, window_seconds: 3600}   # opt in to `pitstop capacity apply --apply`
```
Settings not named keep the strategy's published defaults (`pitstop.capacity.strategies`). Unknown keys are
errors that name the team and field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from .closed_loop import LoopSettings
from .strategies import SimpleSettings, Strategy, VpaSettings


class TeamPolicy(BaseModel, extra="forbid"):
    strategy: Strategy | None = None
    simple: dict[str, Any] = Field(default_factory=dict, description="SimpleSettings fields to override")
    vpa: dict[str, Any] = Field(default_factory=dict, description="VpaSettings fields to override")
    exclude: bool = Field(False, description="no recommendation for this team's workloads")
    closed_loop: dict[str, Any] = Field(
        default_factory=dict, description="LoopSettings fields (`enabled: true` opts the team in to the closed loop)")


class CapacityPolicy(BaseModel, extra="forbid"):
    default: TeamPolicy = Field(default_factory=TeamPolicy)
    teams: dict[str, TeamPolicy] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _settings_valid(self) -> CapacityPolicy:
        for where, team in [("default", None), *((f"teams.{t}", t) for t in self.teams)]:
            try:
                self.simple_settings(team)
                self.vpa_settings(team)
                self.loop_settings(team)
            except ValidationError as exc:
                fields = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
                raise ValueError(f"{where}: {fields}") from None
        return self

    def _layers(self, team: str | None) -> list[TeamPolicy]:
        return [self.default] + ([self.teams[team]] if team in self.teams else [])

    def strategy_for(self, team: str, requested: Strategy) -> Strategy:
        chosen = requested
        for layer in self._layers(team):
            chosen = layer.strategy or chosen
        return chosen

    def excluded(self, team: str) -> bool:
        return any(layer.exclude for layer in self._layers(team))

    def simple_settings(self, team: str | None) -> SimpleSettings:
        merged: dict[str, Any] = {}
        for layer in self._layers(team):
            merged.update(layer.simple)
        return SimpleSettings(**merged)

    def vpa_settings(self, team: str | None) -> VpaSettings:
        merged: dict[str, Any] = {}
        for layer in self._layers(team):
            merged.update(layer.vpa)
        return VpaSettings(**merged)


    def loop_settings(self, team: str | None) -> LoopSettings:
        merged: dict[str, Any] = {}
        for layer in self._layers(team):
            merged.update(layer.closed_loop)
        return LoopSettings(**merged)


class PolicyError(ValueError):
    """The policy file cannot be read or is invalid; the message names the file and field."""


def load_policy(path: Path) -> CapacityPolicy:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"{path}: {exc}") from None
    try:
        return CapacityPolicy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise PolicyError(f"{path}: {problems}") from None
