"""The sandbox clusters' kwokctl configuration binds loopback, and clusters saved with another bind address
(created before the sandbox was loopback-only) are named."""

from __future__ import annotations

from pathlib import Path

from pitstop.sandbox.clusters import (
    KWOK_CONFIG_FILES,
    clusters_listening_beyond_loopback,
    kwok_workdir,
    saved_bind_address,
)

# The shape of a cluster's `kwok.yaml` as kwokctl v0.8.0 saves it (components rendered with their arguments).
SAVED_BEFORE_LOOPBACK = """\
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
components:
- name: etcd
  args:
  - --listen-client-urls=http://0.0.0.0:32765
metadata:
  name: pitstop-eu-central
options:
  runtime: binary
  bindAddress: 0.0.0.0
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-ready
"""


def test_the_config_pitstop_gives_kwokctl_binds_loopback() -> None:
    shipped = "\n---\n".join(path.read_text() for path in KWOK_CONFIG_FILES)
    assert saved_bind_address(shipped) == "127.0.0.1"


def test_a_saved_config_gives_its_bind_address_or_kwokctls_default() -> None:
    assert saved_bind_address(SAVED_BEFORE_LOOPBACK) == "0.0.0.0"
    assert saved_bind_address("kind: Stage\n") == "0.0.0.0"


def test_only_clusters_saved_beyond_loopback_are_named(tmp_path: Path) -> None:
    clusters = kwok_workdir(tmp_path) / "clusters"
    (clusters / "pitstop-eu-central").mkdir(parents=True)
    (clusters / "pitstop-eu-central" / "kwok.yaml").write_text(SAVED_BEFORE_LOOPBACK)
    (clusters / "pitstop-us-east").mkdir(parents=True)
    (clusters / "pitstop-us-east" / "kwok.yaml").write_text(
        SAVED_BEFORE_LOOPBACK.replace("bindAddress: 0.0.0.0", "bindAddress: 127.0.0.1")
    )
    regions = ["eu-central", "us-east", "ap-south"]  # ap-south has no cluster yet
    assert clusters_listening_beyond_loopback(regions=regions, state_dir=tmp_path) == {"eu-central": "0.0.0.0"}
