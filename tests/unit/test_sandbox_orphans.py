"""Which sandbox cluster processes are orphans (pure selection; stopping them is exercised by every sandbox
test session start, in tests/fixtures/kube.py)."""

from pitstop.sandbox.orphans import ClusterProcess, orphaned_cluster_processes, owned_cluster_prefix


def cmd(binary: str, cluster: str) -> str:
    return f"/tmp/pytest-of-ci/pytest-3/pitstop-state0/sandbox/kwok/clusters/{cluster}/bin/{binary} --flag=1"


def test_only_clusters_of_dead_owners_are_orphans() -> None:
    processes = [
        (101, cmd("etcd", "pitstop-test-500-abc123-eu-central")),       # owner 500 is dead
        (102, cmd("kube-apiserver", "pitstop-test-500-abc123-eu-central")),
        (103, cmd("kube-apiserver", "pitstop-test-600-def456-us-east")),  # owner 600 still runs
        (104, cmd("kube-apiserver", "pitstop-eu-central")),               # a developer's sandbox: never
        (105, cmd("kube-apiserver", "pitstop-test-9f8e7d-eu-central")),   # old naming without an owner: left alone
        (107, cmd("kube-apiserver", "pitstop-test-123456-eu-central")),   # old naming, all-digit random part
        (106, "/usr/bin/python3 -m pytest tests/sandbox"),
    ]
    orphans = orphaned_cluster_processes(processes, is_alive=lambda pid: pid == 600)
    assert orphans == [
        ClusterProcess(pid=101, cluster="pitstop-test-500-abc123-eu-central", owner_pid=500),
        ClusterProcess(pid=102, cluster="pitstop-test-500-abc123-eu-central", owner_pid=500),
    ]


def test_the_owned_prefix_carries_the_owner_pid() -> None:
    assert owned_cluster_prefix(owner_pid=4242) == "pitstop-test-4242-"
    cluster = owned_cluster_prefix(owner_pid=4242) + "abc123-us-east"
    assert orphaned_cluster_processes([(7, cmd("etcd", cluster))], is_alive=lambda pid: False)[0].owner_pid == 4242
