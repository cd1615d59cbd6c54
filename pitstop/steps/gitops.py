"""GitOps step types: a bounded suspend of the GitOps engine's reconciliation for one Deployment, and its end.

During an incident a responder may need changes to a git-managed Deployment to stick for a while (a manual
fix, a debug flag) without the engine correcting them. `gitops.suspend` marks the in-cluster Deployment with
Flux's `kustomize.toolkit.fluxcd.io/reconcile: disabled` (kustomize-controller neither applies nor prunes it)
plus pitstop's end time, reason and run; `gitops.resume` lifts it (its compensation: a failed or cancelled run
always resumes); `gitops.resume_expired` lifts every pitstop suspension past its end in a region (the
`gitops-resume-expired` runbook on a schedule: a run that died, e.g. terminated, cannot leave one behind).
A suspension made by hand (no end time) is never lifted by pitstop. Executed by `activities.gitops_suspend`.
"""

from __future__ import annotations

from pydantic import Field

from pitstop.runbook.step_types import StepResult, StepType, register_step_type

from .common import NamespacedArgs, RegionalArgs

MAX_SUSPEND_SECONDS = 4 * 3600


class SuspendArgs(NamespacedArgs):
    reason: str = Field(min_length=3, max_length=300, description="why, for the audit trail and the annotation")
    timeout_seconds: int = Field(1800, ge=60, le=MAX_SUSPEND_SECONDS,
                                 description="the suspension's end: past it, gitops.resume_expired lifts it")


class SuspendResult(StepResult):
    suspended_until: str = Field("", description="RFC 3339 UTC end of the suspension ('' when made by hand)")
    by_hand: bool = Field(False, description="already suspended by hand: left as it is, and never lifted by pitstop")


class ResumeResult(StepResult):
    was_suspended: bool = False


class ResumeExpiredResult(StepResult):
    resumed: list[str] = Field(default_factory=list, description="namespace/name of the Deployments resumed")


class _Gitops(StepType):
    regional = True
    default_timeout_seconds = 60.0


@register_step_type
class GitopsSuspend(_Gitops):
    name = "gitops.suspend"
    description = "Suspend the GitOps engine's reconciliation of one Deployment, bounded (reason, timeout)."
    args_model = SuspendArgs
    result_model = SuspendResult
    activity = "gitops.suspend"
    mutating = True


@register_step_type
class GitopsResume(_Gitops):
    name = "gitops.resume"
    description = "Lift pitstop's suspension of the GitOps engine for one Deployment (a suspension by hand stays)."
    args_model = NamespacedArgs
    result_model = ResumeResult
    activity = "gitops.resume"
    mutating = True


@register_step_type
class GitopsResumeExpired(_Gitops):
    name = "gitops.resume_expired"
    description = "Lift every pitstop suspension of the GitOps engine past its end in one region."
    args_model = RegionalArgs
    result_model = ResumeExpiredResult
    activity = "gitops.resume_expired"
    mutating = True
