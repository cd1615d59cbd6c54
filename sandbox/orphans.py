"""Finding and stopping sandbox clusters whose owner is gone.

kwokctl daemonizes each cluster's processes (etcd, kube-apiserver, controller-manager, scheduler, kwok), so a
test session killed before its teardown leaves them running, about 650 MiB per region. Test sessions name
their clusters `<prefix><owner pid>-<6 hex>-<region>`; `orphaned_cluster_processes` picks the processes of
clusters whose owner pid no longer runs, and `reap_orphaned_clusters` stops them (SIGTERM, then SIGKILL).
A cluster whose owner still runs (another test session at the same time) is never touched.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

TEST_CLUSTER_PREFIX = "pitstop-test-"


@dataclass(frozen=True)
class ClusterProcess:
    pid: int
    cluster: str
    owner_pid: int


def owned_cluster_prefix(prefix: str = TEST_CLUSTER_PREFIX, *, owner_pid: int | None = None) -> str:
    """The name prefix for clusters owned by this process: `pitstop-test-<pid>-`."""
    return f"{prefix}{owner_pid if owner_pid is not None else os.getpid()}-"


def orphaned_cluster_processes(processes: Iterable[tuple[int, str]], *, is_alive: Callable[[int], bool],
                               prefix: str = TEST_CLUSTER_PREFIX) -> list[ClusterProcess]:
    """Of (pid, command line) pairs, those running a `<prefix><owner>-...` cluster whose owner is not alive."""
    pattern = re.compile(r"/clusters/(" + re.escape(prefix) + r"(\d+)-[0-9a-f]{6}-[a-z0-9-]+)/")
    found = []
    for pid, cmdline in processes:
        match = pattern.search(cmdline)
        if match is None:
            continue
        owner = int(match.group(2))
        if owner != pid and not is_alive(owner):
            found.append(ClusterProcess(pid=pid, cluster=match.group(1), owner_pid=owner))
    return found


def _running_processes() -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found.append((int(entry.name), cmdline))
    return found


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_orphaned_clusters(prefix: str = TEST_CLUSTER_PREFIX, *, grace_seconds: float = 5.0) -> list[str]:
    """Stop the processes of orphaned clusters; the names of the clusters stopped."""
    orphans = orphaned_cluster_processes(_running_processes(), is_alive=_is_alive, prefix=prefix)
    for process in orphans:
        try:
            os.kill(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and any(_is_alive(p.pid) for p in orphans):
        time.sleep(0.1)
    for process in orphans:
        if _is_alive(process.pid):
            try:
                os.kill(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return sorted({p.cluster for p in orphans})
