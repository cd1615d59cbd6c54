"""Istio fault injection end to end: chaos.istio actions -> real API server -> simulator -> Prometheus.

The actions run as an experiment would run them (cluster from KUBECONFIG/KUBERNETES_CONTEXT, as
chaostoolkit-kubernetes reads it); effects are observed only through Prometheus queries and the API server.
The last tests run catalog experiments with the real `chaos run` CLI against the session's sandbox.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pitstop.chaos_toolkit.istio.fault import actions
from pitstop.sandbox.kube_objects import get_object, merge_patch
from tests.fixtures.monitoring import SandboxMonitoring

pytestmark = pytest.mark.sandbox

REGION = "eu-central"
WINDOW = "10s"
EXPERIMENTS = Path(__file__).resolve().parents[2] / "chaos" / "experiments"
GEO_NS, GEO_HOST = "team-telematics", "geo-service.team-telematics.svc.cluster.local"
FW_NS, FW_HOST = "team-ota", "firmware-catalog.team-ota.svc.cluster.local"


def eventually(check: Callable[[], Any], *, timeout_seconds: float, what: str, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout_seconds
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not seen within {timeout_seconds}s (last: {last!r})")


def scalar(sandbox: SandboxMonitoring, promql: str) -> float | None:
    result = sandbox.query(promql)
    if not result:
        return None
    value = float(result[0]["value"][1])
    return None if value != value else value  # NaN: no requests in the window


def p95(sandbox: SandboxMonitoring, service: str) -> float | None:
    return scalar(sandbox, f'histogram_quantile(0.95, sum by (le) (rate(istio_request_duration_milliseconds_bucket'
                           f'{{reporter="destination",region="{REGION}",destination_service_name="{service}"}}'
                           f'[{WINDOW}])))')


def error_ratio(sandbox: SandboxMonitoring, service: str) -> float | None:
    selector = f'reporter="destination",region="{REGION}",destination_service_name="{service}"'
    return scalar(sandbox, f'sum(rate(istio_requests_total{{{selector},response_code=~"5.."}}[{WINDOW}])) / '
                           f'sum(rate(istio_requests_total{{{selector}}}[{WINDOW}]))')


def route_state(sandbox: SandboxMonitoring, name: str, namespace: str) -> tuple[Any, Any, Any]:
    """What a rollback must restore exactly: the spec, the labels and the annotations."""
    vs = get_object(sandbox.api_clients[REGION], kind="VirtualService", name=name, namespace=namespace)
    assert vs is not None, f"VirtualService {namespace}/{name} missing"
    meta = vs["metadata"]
    return vs["spec"], meta.get("labels"), meta.get("annotations")


@pytest.fixture
def chaos_env(sandbox_monitoring: SandboxMonitoring, monkeypatch: pytest.MonkeyPatch) -> SandboxMonitoring:
    """The environment an experiment gets: the region's cluster as chaostoolkit-kubernetes reads it."""
    monkeypatch.setenv("KUBECONFIG", str(sandbox_monitoring.clusters.kubeconfig))
    monkeypatch.setenv("KUBERNETES_CONTEXT", sandbox_monitoring.clusters.contexts[REGION])
    return sandbox_monitoring


@pytest.fixture
def restore_routes(sandbox_monitoring: SandboxMonitoring) -> Iterator[None]:
    """Put the routes this module changes back even when a test fails half-way."""
    saved = {key: route_state(sandbox_monitoring, *key) for key in
             [("geo-service", GEO_NS), ("firmware-catalog", FW_NS)]}
    yield
    for (name, namespace), (spec, _labels, _annotations) in saved.items():
        merge_patch(sandbox_monitoring.api_clients[REGION], kind="VirtualService", name=name, namespace=namespace,
                    patch={"metadata": {"annotations": {actions.PREVIOUS_FAULTS_ANNOTATION: None}},
                           "spec": {"http": spec["http"]}})


def test_delay_fault_raises_p95_and_removal_restores_the_route(chaos_env: SandboxMonitoring,
                                                               restore_routes: None) -> None:
    sandbox = chaos_env
    before = route_state(sandbox, "geo-service", GEO_NS)
    baseline = eventually(lambda: p95(sandbox, "geo-service"), timeout_seconds=30, what="geo-service p95")
    routes = [{"destination": {"host": GEO_HOST, "subset": "stable"}}]
    answer = actions.add_delay_fault("geo-service", fixed_delay="1s", routes=routes, percentage=50,
                                     ns=GEO_NS, version="networking.istio.io/v1")
    assert answer["status"] == 200
    assert answer["body"]["spec"]["http"][0]["fault"] == {"delay": {"fixedDelay": "1s", "percentage": {"value": 50}}}
    raised = eventually(lambda: (v := p95(sandbox, "geo-service")) is not None and v > 500 and v,
                        timeout_seconds=30, what=f"geo-service p95 above 500 ms (baseline {baseline:.0f} ms)")
    assert raised > baseline + 400
    actions.remove_delay_fault("geo-service", routes=routes, ns=GEO_NS, version="networking.istio.io/v1")
    assert route_state(sandbox, "geo-service", GEO_NS) == before
    eventually(lambda: (v := p95(sandbox, "geo-service")) is not None and v < 250, timeout_seconds=40,
               what="geo-service p95 back under 250 ms")


def test_abort_fault_raises_the_error_ratio_with_its_status(chaos_env: SandboxMonitoring,
                                                            restore_routes: None) -> None:
    sandbox = chaos_env
    before = route_state(sandbox, "firmware-catalog", FW_NS)
    routes = [{"destination": {"host": FW_HOST, "subset": "stable"}}]
    actions.add_abort_fault("firmware-catalog", http_status=503, routes=routes, percentage=40, ns=FW_NS)  # v1alpha3
    ratio = eventually(lambda: (v := error_ratio(sandbox, "firmware-catalog")) is not None and v > 0.25 and v,
                       timeout_seconds=30, what="firmware-catalog error ratio above 25 %")
    assert ratio < 0.6
    aborted = sandbox.query(f'sum by (response_code, destination_workload) (rate(istio_requests_total{{'
                            f'region="{REGION}",destination_service_name="firmware-catalog"}}[{WINDOW}])) > 0')
    codes = {(r["metric"]["response_code"], r["metric"]["destination_workload"]) for r in aborted}
    assert ("503", "firmware-catalog") in codes and ("200", "firmware-catalog") in codes
    actions.remove_abort_fault("firmware-catalog", routes=routes, ns=FW_NS)
    assert route_state(sandbox, "firmware-catalog", FW_NS) == before


def test_a_fault_the_route_had_before_comes_back_after_the_experiment(chaos_env: SandboxMonitoring,
                                                                      restore_routes: None) -> None:
    sandbox = chaos_env
    routes = [{"destination": {"host": FW_HOST, "subset": "stable"}}]
    http = route_state(sandbox, "firmware-catalog", FW_NS)[0]["http"]
    standing = {"abort": {"httpStatus": 500, "percentage": {"value": 0.1}}}
    merge_patch(sandbox.api_clients[REGION], kind="VirtualService", name="firmware-catalog", namespace=FW_NS,
                patch={"spec": {"http": [{**http[0], "fault": standing}, *http[1:]]}})
    before = route_state(sandbox, "firmware-catalog", FW_NS)
    actions.add_delay_fault("firmware-catalog", fixed_delay="2s", routes=routes, percentage=10, ns=FW_NS)
    actions.add_abort_fault("firmware-catalog", http_status=503, routes=routes, percentage=5, ns=FW_NS)
    actions.remove_abort_fault("firmware-catalog", routes=routes, ns=FW_NS)
    assert route_state(sandbox, "firmware-catalog", FW_NS) == before


def test_routes_to_other_services_carry_their_workload_labels(sandbox_monitoring: SandboxMonitoring,
                                                              restore_routes: None) -> None:
    """firmware-catalog's VirtualService sends part of its requests to two other Services, named by a
    `name.namespace` host and by a short name (relative to the VirtualService's namespace)."""
    sandbox = sandbox_monitoring
    http = route_state(sandbox, "firmware-catalog", FW_NS)[0]["http"]
    merge_patch(sandbox.api_clients[REGION], kind="VirtualService", name="firmware-catalog", namespace=FW_NS,
                patch={"spec": {"http": [{**http[0], "route": [
                    {"destination": {"host": FW_HOST, "subset": "stable"}, "weight": 50},
                    {"destination": {"host": "user-profile.team-identity"}, "weight": 25},
                    {"destination": {"host": "campaign-manager"}, "weight": 25},
                ]}]}})
    versions = {s.name: s.version for s in sandbox.services}

    def series() -> set[tuple[str, ...]]:
        result = sandbox.query(
            f'sum by (destination_service, destination_service_name, destination_service_namespace, '
            f'destination_workload, destination_workload_namespace, destination_version) '
            f'(rate(istio_requests_total{{region="{REGION}",source_workload="ota-update"}}[{WINDOW}])) > 0')
        return {tuple(r["metric"][k] for k in ("destination_service_name", "destination_service",
                                               "destination_service_namespace", "destination_workload",
                                               "destination_workload_namespace", "destination_version"))
                for r in result}

    expected = {
        ("user-profile", "user-profile.team-identity.svc.cluster.local", "team-identity", "user-profile",
         "team-identity", versions["user-profile"]),
        ("campaign-manager", "campaign-manager.team-ota.svc.cluster.local", "team-ota", "campaign-manager",
         "team-ota", versions["campaign-manager"]),
        ("firmware-catalog", FW_HOST, "team-ota", "firmware-catalog", "team-ota", versions["firmware-catalog"]),
    }
    eventually(lambda: expected <= series(), timeout_seconds=30,
               what="ota-update's requests on the Services firmware-catalog's routes name")


def run_chaos(sandbox: SandboxMonitoring, experiment: str, work_dir: Path) -> tuple[int, dict[str, Any]]:
    """`chaos run` (the real CLI) with the environment an operator would give it; returns (exit code, journal)."""
    journal = work_dir / f"{experiment}.journal.json"
    env = {**os.environ,
           "KUBECONFIG": str(sandbox.clusters.kubeconfig),
           "KUBERNETES_CONTEXT": sandbox.clusters.contexts[REGION],
           "PROMETHEUS_URL": sandbox.monitoring.prometheus_url,
           "CHAOS_REGION": REGION, "CHAOS_SLO_WINDOW": WINDOW,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    completed = subprocess.run(
        [sys.executable, "-m", "chaostoolkit", "--no-log-file", "run", str(EXPERIMENTS / experiment),
         "--journal-path", str(journal)],
        env=env, cwd=work_dir, capture_output=True, text=True, timeout=180, check=False)
    assert journal.exists(), f"chaos run wrote no journal:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
    return completed.returncode, json.loads(journal.read_text())


def test_catalog_latency_experiment_deviates_and_rolls_back(sandbox_monitoring: SandboxMonitoring,
                                                            restore_routes: None, tmp_path: Path) -> None:
    sandbox = sandbox_monitoring
    before = route_state(sandbox, "geo-service", GEO_NS)
    eventually(lambda: (v := p95(sandbox, "geo-service")) is not None and v < 250, timeout_seconds=40,
               what="geo-service p95 under 250 ms before the experiment")
    code, journal = run_chaos(sandbox, "dependency-latency.json", tmp_path)
    assert journal["steady_states"]["before"]["steady_state_met"] is True
    assert journal["status"] == "completed" and journal["deviated"] is True and code == 1
    method = {r["activity"]["name"]: r for r in journal["run"]}
    assert method["delay-half-of-geo-service"]["status"] == "succeeded"
    assert method["geo-service-p95-ms-under-fault"]["output"] > 250
    assert journal["steady_states"]["after"]["steady_state_met"] is False
    assert [(r["activity"]["name"], r["status"]) for r in journal["rollbacks"]] == [
        ("remove-geo-service-delay", "succeeded")]
    assert route_state(sandbox, "geo-service", GEO_NS) == before


def test_catalog_pod_kill_experiment_holds(sandbox_monitoring: SandboxMonitoring, tmp_path: Path) -> None:
    code, journal = run_chaos(sandbox_monitoring, "pod-kill-stateless.json", tmp_path)
    assert journal["steady_states"]["before"]["steady_state_met"] is True
    killed = journal["run"][0]
    assert killed["activity"]["name"] == "terminate-one-geo-service-pod" and killed["status"] == "succeeded"
    assert journal["steady_states"]["after"]["steady_state_met"] is True
    assert journal["status"] == "completed" and journal["deviated"] is False and code == 0


def test_catalog_node_not_ready_experiment_fails_a_node_and_brings_it_back(
        sandbox_monitoring: SandboxMonitoring, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pitstop.sandbox.kube_objects import list_objects

    nodes, _ = list_objects(sandbox_monitoring.api_clients[REGION], kind="Node", label_selector="type=kwok")
    node = sorted(n["metadata"]["name"] for n in nodes)[-1]
    monkeypatch.setenv("CHAOS_NODE", node)
    code, journal = run_chaos(sandbox_monitoring, "node-not-ready.json", tmp_path)
    assert journal["steady_states"]["before"]["steady_state_met"] is True
    failed, conditions = journal["run"]
    assert failed["status"] == "succeeded" and failed["output"]["status"] == 0
    assert conditions["output"] == [{**conditions["output"][0], "name": node, "Ready": "False"}]
    assert [(r["activity"]["name"], r["status"], r["output"]["status"]) for r in journal["rollbacks"]] == [
        ("node-ready-again", "succeeded", 0)]
    assert journal["deviated"] is False and code == 0

    def ready() -> bool:
        obj = get_object(sandbox_monitoring.api_clients[REGION], kind="Node", name=node, namespace=None) or {}
        return any(c["type"] == "Ready" and c["status"] == "True" for c in obj.get("status", {}).get("conditions", []))

    eventually(ready, timeout_seconds=30, what=f"node {node} Ready again after the rollback")
