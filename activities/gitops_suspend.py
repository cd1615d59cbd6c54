"""`gitops.suspend`, `gitops.resume`, `gitops.resume_expired`: a bounded suspend of the GitOps engine for one
Deployment (step models and the rules in `pitstop.steps.gitops`; the annotations in `pitstop.gitops`).

Regional, synchronous (the kubernetes client). Idempotent: suspend and resume set an absolute state; the end
time is the activity's first scheduled time plus the timeout, so a retry writes the same annotations.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity

from pitstop.gitops import resume_annotations, suspend_annotations, suspension_expired, suspension_of
from pitstop.runbook.step_types import StepInvocation
from pitstop.steps.common import NamespacedArgs, RegionalArgs
from pitstop.steps.gitops import ResumeExpiredResult, ResumeResult, SuspendArgs, SuspendResult

from .clients import ActivityClients
from .kube_api import KubeJson, deployment_path
from .kube_errors import kube_errors

RFC3339 = "%Y-%m-%dT%H:%M:%SZ"


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(RFC3339)


class GitopsSuspendActivities:
    """Marks on the in-cluster Deployment of one region (`clients.kube`)."""

    def __init__(self, clients: ActivityClients) -> None:
        self._clients = clients

    def _api(self, region: str) -> KubeJson:
        return KubeJson(self._clients.kube_client(region))

    @activity.defn(name="gitops.suspend")
    def suspend(self, invocation: StepInvocation[SuspendArgs]) -> SuspendResult:
        args = invocation.args
        what = f"deployment {args.namespace}/{args.name}"
        until = _stamp(activity.info().scheduled_time + timedelta(seconds=args.timeout_seconds))
        api = self._api(args.region)
        with kube_errors(what, args.region):
            current = suspension_of(api.get(deployment_path(args.namespace, args.name)))
            if current.suspended and not current.by_pitstop:
                return SuspendResult(by_hand=True, summary=f"the GitOps engine's reconciliation of {what} was already "
                                                           "suspended by hand: left as it is")
            if invocation.dry_run:
                return SuspendResult(changed=True, suspended_until=until,
                                     summary=f"would suspend the GitOps engine for {what} until {until}")
            annotations = suspend_annotations(until=until, reason=args.reason, by=invocation.run_id or "pitstop")
            api.patch(deployment_path(args.namespace, args.name), {"metadata": {"annotations": annotations}},
                      patch_type="merge")
        return SuspendResult(changed=current.until != until, suspended_until=until,
                             summary=f"suspended the GitOps engine for {what} in {args.region} until {until}: {args.reason}")

    @activity.defn(name="gitops.resume")
    def resume(self, invocation: StepInvocation[NamespacedArgs]) -> ResumeResult:
        args = invocation.args
        what = f"deployment {args.namespace}/{args.name}"
        api = self._api(args.region)
        with kube_errors(what, args.region):
            dep = api.get_optional(deployment_path(args.namespace, args.name))
            current = suspension_of(dep or {})
            if dep is None or not current.by_pitstop:
                reason = "is gone" if dep is None else "has no suspension of pitstop's"
                return ResumeResult(summary=f"{what} {reason}: nothing to resume")
            if invocation.dry_run:
                return ResumeResult(changed=True, was_suspended=True, summary=f"would resume the GitOps engine for {what}")
            self._lift(api, dep)
        return ResumeResult(changed=True, was_suspended=True,
                            summary=f"resumed the GitOps engine for {what} in {args.region}")

    @activity.defn(name="gitops.resume_expired")
    def resume_expired(self, invocation: StepInvocation[RegionalArgs]) -> ResumeExpiredResult:
        args = invocation.args
        now = _stamp(datetime.now(UTC))
        api = self._api(args.region)
        with kube_errors("deployments (all namespaces)", args.region):
            expired = [d for d in api.items("/apis/apps/v1/deployments") if suspension_expired(suspension_of(d), now)]
            names = [f"{d['metadata']['namespace']}/{d['metadata']['name']}" for d in expired]
            if not invocation.dry_run:
                for dep in expired:
                    self._lift(api, dep)
        verb = "would resume" if invocation.dry_run else "resumed"
        return ResumeExpiredResult(changed=bool(names), resumed=names,
                                   summary=f"{verb} the GitOps engine for {len(names)} Deployment(s) in {args.region} "
                                           f"past their suspension's end{': ' + ', '.join(names) if names else ''}")

    @staticmethod
    def _lift(api: KubeJson, dep: dict[str, Any]) -> None:
        meta = dep["metadata"]
        api.patch(deployment_path(meta["namespace"], meta["name"]), {"metadata": {"annotations": resume_annotations()}},
                  patch_type="merge")
