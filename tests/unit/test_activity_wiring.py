"""Wiring of the step library: clients built from configuration (no I/O: building a client connects to
nothing), and every registered step type has its activity on the right task queue."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from temporalio import activity

import pitstop.steps  # noqa: F401
from pitstop.activities import build_activities
from pitstop.config import Settings
from pitstop.runbook.step_types import STEP_TYPES
from pitstop.workers.clients import ClusterConfigError, build_activity_clients, region_clusters, sandbox_kubeconfig

LIBRARY = ("kubernetes.", "istio.", "prometheus.", "http.", "notify.", "graph.")


def write_kubeconfig(path: Path, contexts: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": c, "cluster": {"server": f"https://127.0.0.1:1/{c}"}} for c in contexts],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": c, "context": {"cluster": c, "user": "u"}} for c in contexts],
                "current-context": contexts[0],
            }
        )
    )
    return path


def test_without_configured_regions_the_sandbox_kubeconfig_is_used(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, sandbox={"regions": ["eu-central", "us-east"]})
    assert sandbox_kubeconfig(settings) == tmp_path / "sandbox" / "kubeconfig"
    assert {r: c.context for r, c in region_clusters(settings).items()} == {"eu-central": "eu-central", "us-east": "us-east"}
    assert build_activity_clients(settings).kube == {}  # sandbox not running yet: no regional clients
    with pytest.raises(ClusterConfigError, match="does not exist"):
        build_activity_clients(settings, require_clusters=True)

    write_kubeconfig(sandbox_kubeconfig(settings), ["eu-central", "us-east"])
    clients = build_activity_clients(settings)
    assert {r: c.configuration.host for r, c in clients.kube.items()} == {
        "eu-central": "https://127.0.0.1:1/eu-central", "us-east": "https://127.0.0.1:1/us-east"
    }


def test_configured_regions_must_load(tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kc", ["prod-eu"])
    settings = Settings(kubernetes={"regions": {"eu": {"kubeconfig": kubeconfig, "context": "prod-eu"}}})
    assert build_activity_clients(settings).kube["eu"].configuration.host == "https://127.0.0.1:1/prod-eu"
    broken = Settings(kubernetes={"regions": {"eu": {"kubeconfig": kubeconfig, "context": "nope"}}})
    with pytest.raises(ClusterConfigError, match="region eu"):
        build_activity_clients(broken)


def test_every_library_step_has_its_activity_on_the_right_queue(tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kc", ["a", "b"])
    settings = Settings(kubernetes={"regions": {"a": {"kubeconfig": kubeconfig}, "b": {"kubeconfig": kubeconfig}}})
    activity_set = build_activities(build_activity_clients(settings))

    def names(fns: list) -> set[str]:
        return {activity._Definition.must_from_callable(fn).name for fn in fns}

    shared = names(activity_set.shared)
    assert set(activity_set.regional) == {"a", "b"}
    for region_fns in activity_set.regional.values():
        regional = names(region_fns)
        for step in (s for n, s in STEP_TYPES.items() if n.startswith(LIBRARY)):
            assert (step.activity in regional) == step.regional, step.name
            assert (step.activity in shared) != step.regional, step.name
