"""Benchmark: how long `create_sandbox_clusters` takes for two regions, and the resident memory of
every control-plane process (kube-apiserver, etcd, kube-controller-manager, kube-scheduler, kwok).

    .venv/bin/python -m bench.sandbox_clusters

Uses a temporary state dir and unique cluster names; deletes the clusters at the end.

Measured 2026-11-25 on the shared 2-core machine (kubernetes v1.35.4, etcd v3.6.16, kwok v0.8.0):
create 2 regions (8 nodes each, teams, CRDs, all Ready) 14 s at load ~4, 58 s at load ~12;
RSS per region: kube-apiserver 343-371 MiB, kube-controller-manager 116 MiB, kwok-controller 80 MiB,
kube-scheduler 68 MiB, etcd 46 MiB; 2 regions together 1334 MiB. Delete: 0.2 s.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from pathlib import Path

from pitstop.sandbox.binaries import ensure_binaries
from pitstop.sandbox.clusters import create_sandbox_clusters, delete_sandbox_clusters

REGIONS = ["eu-central", "us-east"]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    binaries = ensure_binaries(progress=lambda line: print(line, file=sys.stderr))
    with tempfile.TemporaryDirectory(prefix="pitstop-bench-") as state:
        arguments = dict(
            regions=REGIONS, state_dir=Path(state), bin_dir=binaries.bin_dir, cluster_prefix=f"bench-{uuid.uuid4().hex[:6]}"
        )
        started = time.monotonic()
        try:
            clusters = create_sandbox_clusters(**arguments)  # type: ignore[arg-type]
            print(f"create_sandbox_clusters({len(REGIONS)} regions, populated, nodes Ready): {time.monotonic() - started:.1f} s")
            time.sleep(10)  # let the components settle after start-up
            total = 0.0
            for region, name in clusters.cluster_names.items():
                for pid_file in sorted((clusters.kwok_workdir / "clusters" / name / "pids").glob("*.pid")):
                    pid = int(pid_file.read_text().strip())
                    rss = rss_mib(pid)
                    total += rss
                    print(f"  {region:12s} {pid_file.stem:26s} RSS {rss:7.1f} MiB")
            print(f"total RSS of {len(REGIONS)} clusters: {total:.0f} MiB")
        finally:
            started = time.monotonic()
            delete_sandbox_clusters(**arguments)  # type: ignore[arg-type]
            print(f"delete_sandbox_clusters: {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
