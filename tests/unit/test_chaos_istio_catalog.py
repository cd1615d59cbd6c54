"""pitstop.chaos_toolkit.istio's patch logic (pure) and the experiment catalog's validity under chaoslib."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from chaoslib.experiment import ensure_experiment_is_valid
from chaoslib.loader import load_experiment

from pitstop.chaos_toolkit.istio.fault import actions, probes
from pitstop.chaos_toolkit.istio.fault.actions import PREVIOUS_FAULTS_ANNOTATION, _with_fault

EXPERIMENTS = Path(__file__).resolve().parents[2] / "chaos" / "experiments"
HOST = "geo-service.team-telematics.svc.cluster.local"
TARGETS = {(HOST, "stable")}
DELAY = {"delay": {"fixedDelay": "1s", "percentage": {"value": 50}}}


def virtual_service(http: list[dict[str, Any]], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "geo-service", "resourceVersion": "7"}
    if annotations is not None:
        meta["annotations"] = annotations
    return {"metadata": meta, "spec": {"http": http}}


PRIMARY = {"name": "primary", "route": [{"destination": {"host": HOST, "subset": "stable"}, "weight": 100},
                                        {"destination": {"host": HOST, "subset": "canary"}, "weight": 0}]}
OTHER = {"match": [{"headers": {"x": {"exact": "1"}}}], "route": [{"destination": {"host": HOST, "subset": "canary"}}]}


def test_set_then_unset_restores_the_route_exactly() -> None:
    vs = virtual_service([PRIMARY, OTHER])
    faulty = _with_fault(vs, TARGETS, DELAY)
    assert faulty["spec"]["http"] == [{**PRIMARY, "fault": DELAY}, OTHER]
    assert json.loads(faulty["metadata"]["annotations"][PREVIOUS_FAULTS_ANNOTATION]) == {"name:primary": None}
    restored = _with_fault(faulty, TARGETS, None)
    assert restored == vs


def test_a_fault_the_route_had_before_is_restored() -> None:
    standing = {"abort": {"httpStatus": 500, "percentage": {"value": 0.1}}}
    vs = virtual_service([{**PRIMARY, "fault": standing}], annotations={"team": "geo"})
    once = _with_fault(vs, TARGETS, DELAY)
    twice = _with_fault(once, TARGETS, {"abort": {"httpStatus": 503}})  # the first record wins
    restored = _with_fault(twice, TARGETS, None)
    assert restored == vs


def test_unset_without_a_record_removes_the_fault_like_the_original() -> None:
    vs = virtual_service([{**PRIMARY, "fault": DELAY}])
    assert _with_fault(vs, TARGETS, None)["spec"]["http"] == [PRIMARY]


def test_routes_are_matched_by_host_and_subset_and_the_write_is_conditional() -> None:
    vs = virtual_service([PRIMARY, OTHER])
    written = _with_fault(vs, {(HOST, "canary")}, DELAY)
    assert [r.get("fault") for r in written["spec"]["http"]] == [DELAY, DELAY]
    assert written["metadata"]["resourceVersion"] == "7"  # the write is conditional on the version read
    assert _with_fault(vs, {("elsewhere", None)}, DELAY)["spec"]["http"] == [PRIMARY, OTHER]
    assert vs == virtual_service([PRIMARY, OTHER])  # the object read is left alone


def test_the_same_functions_and_argument_names_as_chaostoolkit_istio() -> None:
    """The signatures of chaosistio.fault.actions / probes 0.4.1 (argument names are what experiments bind)."""
    expected = {
        "set_fault": ["virtual_service_name", "routes", "fault", "ns", "version", "configuration", "secrets"],
        "unset_fault": ["virtual_service_name", "routes", "ns", "version", "configuration", "secrets"],
        "add_delay_fault": ["virtual_service_name", "fixed_delay", "routes", "percentage", "ns", "version",
                            "configuration", "secrets"],
        "add_abort_fault": ["virtual_service_name", "http_status", "routes", "percentage", "ns", "version",
                            "configuration", "secrets"],
        "remove_delay_fault": ["virtual_service_name", "routes", "ns", "version", "configuration", "secrets"],
        "remove_abort_fault": ["virtual_service_name", "routes", "ns", "version", "configuration", "secrets"],
    }
    assert sorted(actions.__all__) == sorted(expected)
    for name, args in expected.items():
        assert list(inspect.signature(getattr(actions, name)).parameters) == args, name
    assert list(inspect.signature(probes.get_virtual_service).parameters) == [
        "virtual_service_name", "ns", "version", "configuration", "secrets"]


@pytest.mark.parametrize("experiment", sorted(p.name for p in EXPERIMENTS.glob("*.json")))
def test_every_catalog_experiment_is_valid(experiment: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    monkeypatch.setenv("CHAOS_NODE", "eu-central-m5-xlarge-0")
    loaded = load_experiment(str(EXPERIMENTS / experiment))
    ensure_experiment_is_valid(loaded)  # raises InvalidExperiment with chaoslib's message
    rollbacks = {(r["provider"]["func"], json.dumps(r["provider"]["arguments"].get("routes")))
                 for r in loaded.get("rollbacks", []) if r["provider"]["type"] == "python"}
    for activity in loaded["method"]:
        func = activity["provider"].get("func", "")
        if func.startswith("add_"):  # every injected Istio fault has its rollback on the same routes
            routes = json.dumps(activity["provider"]["arguments"]["routes"])
            assert (func.replace("add_", "remove_"), routes) in rollbacks, activity["name"]


def test_the_catalog_covers_the_issue() -> None:
    assert sorted(p.name for p in EXPERIMENTS.glob("*.json")) == [
        "degraded-region.json", "dependency-latency.json", "http-aborts.json", "node-not-ready.json",
        "pod-kill-stateless.json"]
