"""The pure pieces of `sandbox.control_plane`: reading a component's command from kwokctl's saved configuration,
and recognising its process in /proc. (Stopping and starting real processes: tests/sandbox/test_kube_apiserver_restart.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from pitstop.sandbox.control_plane import (
    KUBE_APISERVER,
    KUBE_CONTROLLER_MANAGER,
    KWOK_CONTROLLER,
    ComponentCommand,
    ControlPlaneError,
    component_command,
    process_state,
    runs_command,
)

# trimmed from a cluster's `kwok.yaml` as kwokctl v0.8.0 writes it (binary runtime)
SAVED = """\
apiVersion: config.kwok.x-k8s.io/v1alpha1
components:
- args:
  - --etcd-servers=http://127.0.0.1:32765
  - --secure-port=32764
  binary: /w/clusters/c1/bin/kube-apiserver
  command: [kube-apiserver]
  metric: {certPath: /w/clusters/c1/pki/admin.crt, host: '127.0.0.1:32764', path: /metrics, scheme: https}
  name: kube-apiserver
  ports: [{name: https, port: 32764, protocol: TCP}]
  workDir: /w/clusters/c1
- args: [--kubeconfig=/w/clusters/c1/kubeconfig.yaml, --secure-port=32762]
  binary: /w/clusters/c1/bin/kube-controller-manager
  envs: [{name: GOMAXPROCS, value: "1"}]
  metric: {host: '127.0.0.1:32762', path: /metrics, scheme: https}
  name: kube-controller-manager
  workDir: /w/clusters/c1
- args: [--node-port=32763]
  binary: /w/clusters/c1/bin/kwok-controller
  metric: {host: '127.0.0.1:32763', path: /metrics, scheme: http}
  name: kwok-controller
  workDir: /w/clusters/c1
- image: registry.k8s.io/etcd:3.6.10-0
  name: etcd
kind: KwokctlConfiguration
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: pod-ready}
"""


def test_the_api_servers_command_and_readiness_endpoint() -> None:
    command = component_command(SAVED, KUBE_APISERVER)
    assert command.argv == ["/w/clusters/c1/bin/kube-apiserver", "--etcd-servers=http://127.0.0.1:32765", "--secure-port=32764"]
    assert command.work_dir == Path("/w/clusters/c1")
    assert command.health_url == "https://127.0.0.1:32764/readyz"
    assert command.env == {}


def test_other_components_are_asked_healthz_on_their_own_scheme_with_their_envs() -> None:
    manager = component_command(SAVED, KUBE_CONTROLLER_MANAGER)
    assert manager.health_url == "https://127.0.0.1:32762/healthz"
    assert manager.env == {"GOMAXPROCS": "1"}
    assert component_command(SAVED, KWOK_CONTROLLER).health_url == "http://127.0.0.1:32763/healthz"


def test_a_missing_component_or_a_container_runtime_is_refused_by_name() -> None:
    with pytest.raises(ControlPlaneError, match="cluster c1: no component 'kube-scheduler'"):
        component_command(SAVED, "kube-scheduler", cluster="c1")
    with pytest.raises(ControlPlaneError, match="etcd has no binary"):
        component_command(SAVED, "etcd")


def test_a_recorded_pid_is_the_component_only_if_it_runs_its_binary() -> None:
    command = ComponentCommand(name=KUBE_APISERVER, argv=["/w/bin/kube-apiserver", "--x"], work_dir=Path("/w"))
    assert runs_command(b"/w/bin/kube-apiserver\0--x\0", command)
    assert not runs_command(b"/usr/bin/python3\0/w/bin/kube-apiserver\0", command)  # pid reused by another program
    assert not runs_command(b"", command)  # a zombie's cmdline is empty


def test_the_state_letter_is_read_after_the_last_parenthesis() -> None:
    assert process_state("123 (kube-apiserver) S 1 123 123 0 -1") == "S"
    assert process_state("9 (odd) name) Z 1 9 9 0 -1") == "Z"
