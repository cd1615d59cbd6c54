"""A scratch cluster for restore drills: one more kwok cluster (same binaries, CRDs, team namespaces and nodes as a
sandbox region), kept apart from the fleet's regions under `<state_dir>/scratch`, its kubeconfig context named
`scratch`. pitstop's product code never creates clusters; the backup drill restores into a cluster it is given
(`backup.restore_targets`; the worker uses this one as target `scratch` when none is configured).

    pitstop sandbox scratch-cluster create|delete
"""

from __future__ import annotations

from pathlib import Path

from pitstop.sandbox.clusters import (
    DEFAULT_CLUSTER_PREFIX,
    SandboxClusters,
    create_sandbox_clusters,
    delete_sandbox_clusters,
    kubeconfig_path,
)

SCRATCH = "scratch"


def scratch_state_dir(state_dir: Path) -> Path:
    return state_dir / SCRATCH


def scratch_kubeconfig(state_dir: Path) -> Path:
    """`<state_dir>/scratch/sandbox/kubeconfig`, context `scratch` (what `workers.clients` looks for)."""
    return kubeconfig_path(scratch_state_dir(state_dir))


def create_scratch_cluster(*, state_dir: Path, bin_dir: Path, cluster_prefix: str = DEFAULT_CLUSTER_PREFIX) -> SandboxClusters:
    """Create (or start again) the scratch cluster `<prefix>-scratch`; idempotent."""
    return create_sandbox_clusters(regions=[SCRATCH], state_dir=scratch_state_dir(state_dir), bin_dir=bin_dir,
                                   cluster_prefix=cluster_prefix)


def delete_scratch_cluster(*, state_dir: Path, bin_dir: Path, cluster_prefix: str = DEFAULT_CLUSTER_PREFIX) -> None:
    delete_sandbox_clusters(regions=[SCRATCH], state_dir=scratch_state_dir(state_dir), bin_dir=bin_dir,
                            cluster_prefix=cluster_prefix)
