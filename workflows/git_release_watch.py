"""`GitReleaseWatch`: releases started by a commit (issue 18 item 3, docs/gitops.md).

Every `poll_seconds` it asks each region (`gitops.pending_releases`, on the region's task queue) which opted-in
Deployments hold a template from git their pods do not run, and starts a `ProgressiveRelease` for each as an
abandoned child whose id names the Deployment and the template's hash: a restarted or continued watcher finds the
release already started (running or closed) and does not start it twice. It continues-as-new every
`polls_per_run` polls, so its history stays small however long it runs.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from pitstop.config import regional_task_queue
    from pitstop.delivery.inputs import ReleaseInput
    from pitstop.delivery.spec import RELEASE_WORKFLOW
    from pitstop.failures import failure_text
    from pitstop.git_releases import (
        GIT_RELEASE_WATCH_WORKFLOW,
        GitReleaseWatchInput,
        PendingReleases,
        PendingReleasesInput,
        WatchStatus,
    )

    from .activity_policies import HEARTBEAT_TIMEOUT, QUICK, SLOW_ACTIVITY_TIMEOUT


@workflow.defn(name=GIT_RELEASE_WATCH_WORKFLOW)
class GitReleaseWatch:
    """Polls the regions for templates from git waiting for their release, and starts them."""

    def __init__(self) -> None:
        self._status = WatchStatus()

    @workflow.query
    def status(self) -> WatchStatus:
        return self._status

    @workflow.run
    async def run(self, request: GitReleaseWatchInput) -> None:
        self._status = request.carried or WatchStatus()
        base = request.task_queue or workflow.info().task_queue
        for _ in range(request.polls_per_run):
            for region in request.regions:
                await self._poll(region, regional_task_queue(base, region))
            self._status.polls += 1
            await workflow.sleep(timedelta(seconds=request.poll_seconds))
        workflow.continue_as_new(request.model_copy(update={"carried": self._status}))

    async def _poll(self, region: str, queue: str) -> None:
        try:
            found = await workflow.execute_activity(
                "gitops.pending_releases", PendingReleasesInput(region=region), result_type=PendingReleases,
                task_queue=queue, start_to_close_timeout=SLOW_ACTIVITY_TIMEOUT, heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=QUICK, summary=f"{region}: templates from git waiting for a release",
            )
        except ActivityError as exc:  # the next poll tries again; the watcher itself never fails
            self._status.note(f"{region}: {failure_text(exc)}")
            return
        for name in found.paused:
            self._status.note(f"{region}: paused {name} (opted in to releases from git)")
        for problem in found.problems:
            self._status.note(f"{region}: {problem}")
        for startable in found.releases:
            if startable.workflow_id in self._status.started:
                continue  # started by this watcher (e.g. still running); the id's reuse policy guards the rest
            try:
                await workflow.start_child_workflow(
                    RELEASE_WORKFLOW, ReleaseInput(release=startable.release, region=region),
                    id=startable.workflow_id, task_queue=workflow.info().task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                )
            except WorkflowAlreadyStartedError:
                continue
            self._status.record_start(startable.workflow_id)
            self._status.note(f"{region}: started {startable.workflow_id} ({startable.pending.running_image} -> "
                              f"{startable.pending.image})")
