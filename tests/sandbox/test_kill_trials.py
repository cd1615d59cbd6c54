"""Kill trials in CI (issue 11): shipped mutating runbooks run by a real `pitstop worker` process that is kill -9'd
at seeded random moments; every run converges and the kube-apiserver's own audit log shows no step's write and no
compensation applied twice (`sandbox/kill_trials.py` says how; `bench/reliability.py` runs 50 with the same code).

20 trials of the short runbooks — scale-service (also aborted mid-rollout, so its compensation runs),
restart-service in both regions, remediate-scale-out, remediate-restart, remediate-rollback — in 2 rounds of 10
runs, 2 kills per round. Real Temporal dev server, real kube-apiservers (kwok) with their audit logs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes.client import ApiClient
from temporalio.client import Client

from pitstop.sandbox.audit import audit_log_path, read_events
from pitstop.sandbox.clusters import SandboxClusters, api_client
from pitstop.sandbox.kill_trials import SHORT_KINDS, KillTrialSettings, TrialKind, run_kill_trials

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]


@pytest.fixture(scope="module")
def admin(kube_sandbox: SandboxClusters) -> Iterator[dict[str, ApiClient]]:
    clients = {region: api_client(clusters=kube_sandbox, region=region) for region in kube_sandbox.contexts}
    yield clients
    for client in clients.values():
        client.close()


def test_the_sandbox_api_servers_write_an_audit_log_of_writes(kube_sandbox: SandboxClusters) -> None:
    for region, name in kube_sandbox.cluster_names.items():
        log = audit_log_path(kwok_workdir=kube_sandbox.kwok_workdir, cluster_name=name)
        events = list(read_events([log]))
        assert events, f"{region}: no audit events in {log}"
        assert {e.verb for e in events} <= {"create", "update", "patch", "delete", "deletecollection"}, "reads are not logged"
        assert not any(e.object_ref and e.object_ref.resource == "leases" for e in events), "lease renewals are left out"


async def test_kill_trials_converge_without_duplicated_writes(
    temporal_client: Client, kube_sandbox: SandboxClusters, admin: dict[str, ApiClient], tmp_path: Path
) -> None:
    settings = KillTrialSettings(trials=20, seed=20261208, round_size=10, kills_per_round=2)
    report = await run_kill_trials(client=temporal_client, clusters=kube_sandbox, admin=admin, settings=settings,
                                   work_dir=tmp_path, progress=print)
    print(report.summary())
    assert len(report.trials) == 20 and report.kills == 4
    assert {t.kind for t in report.trials} == set(SHORT_KINDS), "every short runbook was tried"
    assert report.in_flight >= 8, f"kills must land while runs are open:\n{report.summary()}"
    assert report.converged == 20, report.summary()
    assert report.duplicated_writes == 0, report.summary()
    assert all(t.writes == t.expected_writes for t in report.trials), report.summary()
    aborted = [t for t in report.trials if t.kind is TrialKind.SCALE_ABORTED]
    assert aborted and all(t.compensation_writes == 1 for t in aborted), report.summary()
