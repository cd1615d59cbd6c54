"""Models of a chaos run (`ChaosExperimentWorkflow`'s input and outcome, its phase activity's input and result) and
the checks pitstop applies to an experiment before anything runs.

An experiment is Chaos Toolkit's own document (JSON or YAML), carried unchanged as a dict. Secrets enter the run
only as references (`{"type": "env", "key": ...}`): the child process resolves them from the worker's
environment, so no secret value is ever part of the workflow's input or history.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from pitstop.delivery.spec import ErrorBudgetGate

CHAOS_WORKFLOW = "ChaosExperiment"
RollbackStrategy = Literal["default", "always", "never", "deviated"]


class ChaosStatus(StrEnum):
    """Chaos Toolkit's statuses (a deviated run is `completed` with `deviated: true`)."""

    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"
    INTERRUPTED = "interrupted"


class ChaosTarget(BaseModel):
    """The service an experiment acts on: its lease, error budget and blast radius are checked."""

    region: str
    namespace: str
    service: str

    @classmethod
    def parse(cls, text: str) -> ChaosTarget:
        """`REGION/NAMESPACE/SERVICE`; ValueError otherwise."""
        parts = text.split("/")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"target {text!r} is not REGION/NAMESPACE/SERVICE")
        return cls(region=parts[0], namespace=parts[1], service=parts[2])

    def __str__(self) -> str:
        return f"{self.region}/{self.namespace}/{self.service}"


class SloGuard(BaseModel):
    """The dead-man switch's SLO probes (Prometheus, the release analysis' queries) while the method runs."""

    interval: float = Field(10.0, gt=0, description="seconds between measurements")
    window: str = Field("1m", description="PromQL range of each measurement")
    success_rate_min: float | None = Field(None, ge=0, le=100, description="critical check: percent of non-5xx")
    latency_p95_max_ms: float | None = Field(None, gt=0, description="warning check: p95 latency in milliseconds")
    region_label: str | None = "region"


class ChaosRequest(BaseModel):
    """Input of `ChaosExperimentWorkflow` (also the `chaos.experiment` step's `with:`)."""

    experiment: dict[str, Any] | None = Field(None, description="the Chaos Toolkit experiment document, unchanged")
    experiment_file: str | None = Field(
        None, description="instead of `experiment`: a file under the worker's `chaos.experiments_dir`"
    )
    targets: list[ChaosTarget] = Field(default_factory=list, description="services acted on (lease, budget, blast)")
    region: str = Field("", description="the region whose cluster the experiment's providers use; default the first target's")
    rollback_strategy: RollbackStrategy = "default"
    deadline_seconds: float = Field(600.0, gt=0, description="the method is aborted and rolled back after this")
    guard: SloGuard | None = Field(None, description="dead-man switch SLO probes while the method runs")
    error_budget: ErrorBudgetGate | None = Field(None, description="refuse to start while a target's budget is spent")
    max_pod_share: float = Field(0.5, gt=0, le=1, description="largest share of a target's pods the method may act on")
    rollback_attempts: int = Field(5, ge=1, le=50, description="attempts per rollback before it is reported failed")
    heartbeat_timeout_seconds: float = Field(
        10.0, ge=2, description="a phase whose worker is silent this long is taken over by another worker")
    dry_run: bool = Field(False, description="chaoslib's dry mode: no activity or probe is executed")
    skip_refused: bool = Field(
        False, description="a target that is leased, over its error budget or beyond the blast radius ends the run "
                           "`skipped` (with the reason) instead of failed: for nightly runs over a catalog")
    started_by: str = ""

    def run_region(self) -> str:
        return self.region or (self.targets[0].region if self.targets else "")


class PhaseName(StrEnum):
    VALIDATE = "validate"
    STEADY_STATE = "steady-state"
    METHOD = "method"
    ROLLBACK = "rollback"


class PhaseInput(BaseModel):
    """Input of the `chaos.phase` activity: one phase in one child process."""

    run_id: str
    phase: PhaseName
    experiment: dict[str, Any] | None = None
    experiment_file: str | None = None
    index: int = Field(0, description="the rollback's position (phase rollback)")
    dry_run: bool = False


class PhaseResult(BaseModel):
    """What a phase's child process reported (runs in Chaos Toolkit's journal shape)."""

    phase: PhaseName
    runs: list[dict[str, Any]] = Field(default_factory=list)
    steady_state: dict[str, Any] | None = None
    experiment: dict[str, Any] | None = Field(None, description="validate: the experiment as loaded")
    error: str = Field("", description="validate: chaoslib's message; method: the fatal error that aborted it")
    interrupted: bool = Field(False, description="the experiment interrupted itself (InterruptExecution)")
    chaoslib_version: str = ""
    platform: str = ""
    node: str = ""


class SloCheckResult(BaseModel):
    name: str
    severity: Literal["critical", "warning"]
    passed: bool
    detail: str = ""


class ChaosOutcome(BaseModel):
    """Result of `ChaosExperimentWorkflow`: the journal (as `chaos run` writes it) and pitstop's verdicts."""

    title: str = ""
    status: ChaosStatus = ChaosStatus.COMPLETED
    deviated: bool = False
    targets: list[ChaosTarget] = Field(default_factory=list)
    reason: str = Field("", description="why it was aborted / refused / skipped")
    skipped: bool = Field(False, description="refused by a gate with `skip_refused`: nothing ran")
    rollbacks_played: bool = False
    rollback_failures: list[str] = Field(default_factory=list, description="rollbacks that failed every attempt")
    failed_activities: list[str] = Field(default_factory=list, description="method activities whose run failed")
    checks: list[SloCheckResult] = Field(default_factory=list)
    score: float | None = Field(None, description="resilience score 0..1; None without any check")
    summary: str = ""
    journal: dict[str, Any] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is ChaosStatus.COMPLETED and not self.deviated and not self.rollback_failures and not self.skipped


# ---------------------------------------------------------------- checks before anything runs


def all_activities(experiment: dict[str, Any]) -> list[dict[str, Any]]:
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    found: list[dict[str, Any]] = []
    for group in (hypothesis.get("probes") or [], experiment.get("method") or [], experiment.get("rollbacks") or []):
        found.extend(a for a in group if isinstance(a, dict))
    return found


def provider_refusals(
    experiment: dict[str, Any], *, modules: list[str], processes: list[str]
) -> list[str]:
    """Activities whose python module or process path the worker's allowlists do not permit
    (`security.chaos_provider_modules`, `security.chaos_process_providers`: glob patterns)."""
    refusals = []
    for activity in all_activities(experiment):
        provider = activity.get("provider") or {}
        kind, name = provider.get("type"), activity.get("name", "?")
        if kind == "python":
            module = str(provider.get("module", ""))
            if not any(fnmatch.fnmatchcase(module, p) for p in modules):
                refusals.append(f"activity {name!r}: python module {module!r} is not in security.chaos_provider_modules")
        elif kind == "process":
            path = str(provider.get("path", ""))
            if not any(fnmatch.fnmatchcase(path, p) for p in processes):
                refusals.append(f"activity {name!r}: process {path!r} is not in security.chaos_process_providers")
    return refusals


def inline_secrets(experiment: dict[str, Any]) -> list[str]:
    """`secrets` entries given as values rather than references: refused (they would enter workflow history)."""
    found = []
    for scope, entries in (experiment.get("secrets") or {}).items():
        for key, value in (entries or {}).items() if isinstance(entries, dict) else ():
            if not (isinstance(value, dict) and value.get("type") in ("env", "vault")):
                found.append(f"secrets.{scope}.{key}")
    return found


def referenced_env(experiment: dict[str, Any]) -> list[str]:
    """Environment variable names the `configuration` and `secrets` blocks read (`type: env`)."""
    names: set[str] = set()
    for value in (experiment.get("configuration") or {}).values():
        if isinstance(value, dict) and value.get("type") == "env" and value.get("key"):
            names.add(str(value["key"]))
    for entries in (experiment.get("secrets") or {}).values():
        for value in (entries or {}).values() if isinstance(entries, dict) else ():
            if isinstance(value, dict) and value.get("type") == "env" and value.get("key"):
                names.add(str(value["key"]))
    return sorted(names)


def child_environment(
    experiment: dict[str, Any], *, environ: Mapping[str, str], env_problem: Callable[[str], str | None],
    base: dict[str, str],
) -> tuple[dict[str, str], list[str]]:
    """The child process' environment: `base` (PATH, PYTHONPATH, the region's KUBECONFIG) plus each variable the
    experiment names that the worker's allowlist permits (`env_problem`: `AuthorReach.env_problem`, i.e.
    `security.env_allowlist`); and the problems of the names refused."""
    env = dict(base)
    refused = []
    for name in referenced_env(experiment):
        problem = env_problem(name)
        if problem:
            refused.append(problem)
        elif name in environ:
            env[name] = environ[name]
    return env, refused


def experiment_summary(experiment: dict[str, Any]) -> str:
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    return (
        f"{experiment.get('title', '(untitled)')!r}: {len(hypothesis.get('probes') or [])} steady-state probe(s), "
        f"{len(experiment.get('method') or [])} method activit(ies), {len(experiment.get('rollbacks') or [])} rollback(s)"
    )
