"""The rightsizing loop's pure parts: OOM/throttling/latency verdicts, pod signals from container statuses,
what changes, the candidate's version label, the policy opt-in, the rightsizing candidate Deployment, and the
kustomize patch files."""

from __future__ import annotations

import math

import pytest
import yaml

from pitstop.analysis import Measurement, Verdict
from pitstop.capacity.closed_loop import (
    CanarySignals, LoopDecision, LoopInput, LoopSettings, PodSignals, candidate_version, cpu_quantity,
    current_resources, latency_verdict, loop_verdict, memory_quantity, oom_verdict, pod_signals, resource_changes,
    signal_queries, signals_from, throttling_verdict, window_verdict,
)
from pitstop.capacity.kustomize import KUSTOMIZATION, DeploymentPatch, kustomize_files
from pitstop.capacity.policy import CapacityPolicy
from pitstop.delivery.spec import ContainerResources, ReleaseSpec, ReleaseTarget
from pitstop.delivery.workloads import candidate_deployment

S = LoopSettings(enabled=True)


def res(**kw: dict[str, str]) -> ContainerResources:
    return ContainerResources.model_validate(kw)


def pod(name: str, *statuses: dict) -> dict:
    return {"metadata": {"name": name}, "status": {"containerStatuses": list(statuses)}}


# ------------------------------------------------------------------ verdicts


def test_oom_kill_fails_even_below_the_restart_limit() -> None:
    check = oom_verdict(PodSignals(pods=1, restarts=1, oom_kills=1, oom_pods=["p/app"]), S.model_copy(update={"max_restarts": 5}))
    assert check.verdict is Verdict.FAIL and "1 OOM kill(s) in the canary (p/app)" in check.reason


def test_restarts_above_the_limit_fail_and_none_pass() -> None:
    assert oom_verdict(PodSignals(pods=2, restarts=1), S).verdict is Verdict.FAIL
    assert oom_verdict(PodSignals(pods=2, restarts=1), S.model_copy(update={"max_restarts": 1})).verdict is Verdict.PASS
    assert oom_verdict(PodSignals(pods=0), S).verdict is Verdict.INCONCLUSIVE


@pytest.mark.parametrize(("ratio", "verdict"), [(None, Verdict.INCONCLUSIVE), (math.nan, Verdict.INCONCLUSIVE),
                                                (0.25, Verdict.PASS), (0.2501, Verdict.FAIL)])
def test_throttling_bound_is_inclusive(ratio: float | None, verdict: Verdict) -> None:
    assert throttling_verdict(ratio, S).verdict is verdict


def test_latency_absolute_and_relative_bounds() -> None:
    assert latency_verdict(None, 100, S).verdict is Verdict.INCONCLUSIVE
    assert latency_verdict(501, None, S).verdict is Verdict.FAIL
    assert latency_verdict(126, 100, S).verdict is Verdict.FAIL  # > 1.25 x stable
    assert latency_verdict(125, 100, S).verdict is Verdict.PASS
    assert latency_verdict(300, None, S).verdict is Verdict.PASS  # no stable reading: the absolute bound only
    free = S.model_copy(update={"latency_p95_max_ms": None, "max_latency_ratio": None})
    assert latency_verdict(10_000, 1, free).verdict is Verdict.PASS


def test_loop_verdict_fails_on_any_failure_and_passes_without_throttling_series() -> None:
    good = CanarySignals(pods=PodSignals(pods=1), latency_p95_ms=80, stable_latency_p95_ms=75)
    assert loop_verdict(good, S).verdict is Verdict.PASS  # no CFS series (no CPU limit): not a reason to hold
    oom = good.model_copy(update={"pods": PodSignals(pods=1, restarts=2, oom_kills=1, oom_pods=["x/app"])})
    decision = loop_verdict(oom, S)
    assert decision.verdict is Verdict.FAIL and decision.reason.startswith("1 OOM kill(s)")
    assert loop_verdict(good.model_copy(update={"throttled_ratio": 0.9}), S).verdict is Verdict.FAIL
    assert loop_verdict(good.model_copy(update={"latency_p95_ms": None}), S).verdict is Verdict.INCONCLUSIVE


def test_window_verdict() -> None:
    def d(v: Verdict) -> LoopDecision:
        return LoopDecision(verdict=v, checks=[])

    assert window_verdict([d(Verdict.INCONCLUSIVE), d(Verdict.PASS)]) is Verdict.PASS
    assert window_verdict([d(Verdict.PASS), d(Verdict.FAIL), d(Verdict.PASS)]) is Verdict.FAIL
    assert window_verdict([d(Verdict.INCONCLUSIVE)]) is Verdict.INCONCLUSIVE
    assert window_verdict([]) is Verdict.INCONCLUSIVE


# ------------------------------------------------------------------ signals


def test_pod_signals_read_restart_counts_and_oom_reasons_from_container_statuses() -> None:
    pods = [
        pod("a-canary-1", {"name": "app", "restartCount": 3, "lastState": {"terminated": {"reason": "OOMKilled"}}},
            {"name": "sidecar", "restartCount": 1, "lastState": {"terminated": {"reason": "Error"}}}),
        pod("a-canary-2", {"name": "app", "restartCount": 0, "state": {"terminated": {"reason": "OOMKilled"}}}),
        pod("a-canary-3", {"name": "app", "restartCount": 0, "state": {"running": {}}}),
        {"metadata": {"name": "a-canary-4"}, "status": {}},
    ]
    found = pod_signals(pods)
    assert (found.pods, found.restarts, found.oom_kills) == (4, 4, 2)
    assert found.oom_pods == ["a-canary-1/app", "a-canary-2/app"]
    assert pod_signals(pods, {"sidecar"}).model_dump() == {"pods": 4, "restarts": 1, "oom_kills": 0, "oom_pods": []}


def test_signal_queries_select_the_candidates_pods_and_both_versions() -> None:
    request = LoopInput(service="cart", namespace="shop", region="eu", resources={}, settings=S)
    throttled, canary, stable = signal_queries(request, candidate="cart-canary", canary_version="1.2-rs-0a0b0c0d",
                                               stable_version="1.2")
    assert 'pod=~"cart-canary-.*"' in throttled.query and 'region="eu"' in throttled.query
    assert throttled.query.startswith("sum(rate(container_cpu_cfs_throttled_periods_total{")
    assert "/ sum(rate(container_cpu_cfs_periods_total{" in throttled.query
    assert 'destination_version="1.2-rs-0a0b0c0d"' in canary.query and 'destination_version="1.2"' in stable.query
    signals = signals_from(PodSignals(pods=1), {throttled.name: Measurement(value=0.1), canary.name: Measurement(),
                                                stable.name: Measurement(error="down")})
    assert (signals.throttled_ratio, signals.latency_p95_ms, signals.stable_latency_p95_ms) == (0.1, None, None)


# ------------------------------------------------------------------ what changes


def test_quantities_round_up() -> None:
    assert (cpu_quantity(0.1234), cpu_quantity(0.0001), cpu_quantity(0.25)) == ("124m", "1m", "250m")
    assert (memory_quantity(64 * 2**20), memory_quantity(64 * 2**20 + 1)) == ("64Mi", "65Mi")


def test_resource_changes_and_unknown_container() -> None:
    template = {"spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "500m", "memory": "512Mi"},
                                                                      "limits": {"memory": "512Mi"}}}]}}
    current = current_resources(template)
    wanted = {"app": res(requests={"cpu": "120m", "memory": "512Mi"}, limits={"memory": "64Mi"})}
    assert resource_changes(current, wanted) == ["app: requests.cpu 500m -> 120m", "app: limits.memory 512Mi -> 64Mi"]
    assert resource_changes(current, {"app": res(requests={"cpu": "500m"})}) == []
    with pytest.raises(ValueError, match="no container 'web'"):
        resource_changes(current, {"web": res(requests={"cpu": "1"})})


def test_candidate_version_is_a_distinct_stable_label_value() -> None:
    wanted = {"app": res(limits={"memory": "64Mi"})}
    v = candidate_version("1.4.2", wanted)
    assert v.startswith("1.4.2-rs-") and len(v) == len("1.4.2-rs-") + 8
    assert candidate_version("1.4.2", wanted) == v != candidate_version("1.4.2", {"app": res(limits={"memory": "65Mi"})})
    assert candidate_version(v, wanted) == v  # a second loop after a roll-out does not stack suffixes
    assert len(candidate_version("x" * 63, wanted)) <= 63


def test_quantity_validation_names_the_bad_value() -> None:
    with pytest.raises(ValueError, match="not Kubernetes quantities"):
        res(requests={"cpu": "lots"})


def test_policy_opt_in_per_team() -> None:
    policy = CapacityPolicy.model_validate({"default": {"closed_loop": {"window_seconds": 600}},
                                            "teams": {"team-a": {"closed_loop": {"enabled": True}}}})
    assert policy.loop_settings("team-a").enabled and policy.loop_settings("team-a").window_seconds == 600
    assert not policy.loop_settings("team-b").enabled
    with pytest.raises(ValueError, match="teams.team-a: max_throttled_ratio"):
        CapacityPolicy.model_validate({"teams": {"team-a": {"closed_loop": {"max_throttled_ratio": 2}}}})


def test_rightsizing_candidate_differs_from_stable_by_resources_and_version_only() -> None:
    stable = {"metadata": {"name": "cart", "namespace": "shop", "resourceVersion": "9"},
              "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "cart", "pitstop.dev/role": "stable"}},
                       "template": {"metadata": {"labels": {"app": "cart", "pitstop.dev/role": "stable", "version": "1.2"}},
                                    "spec": {"containers": [{"name": "app", "image": "r/cart:1.2",
                                                             "resources": {"requests": {"cpu": "1", "memory": "1Gi"},
                                                                           "limits": {"cpu": "2", "memory": "1Gi"}}}]}}}}
    spec = ReleaseSpec(service="cart", namespace="shop", image="r/cart:1.2", version="1.2-rs-00000000",
                       resources={"app": res(requests={"memory": "256Mi"}, limits={"memory": "256Mi"})})
    target: ReleaseTarget = spec.target("eu")
    cand = candidate_deployment(stable, target, image=spec.image, version=spec.new_version, replicas=1,
                                resources={k: v.as_json() for k, v in spec.resources.items()})
    (container,) = cand["spec"]["template"]["spec"]["containers"]
    assert container == {"name": "app", "image": "r/cart:1.2", "resources": {
        "requests": {"cpu": "1", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "256Mi"}}}
    assert stable["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "1Gi"  # untouched
    with pytest.raises(ValueError, match="no container 'web'"):
        candidate_deployment(stable, target, image="r/cart:1.2", version="v", replicas=1,
                             resources={"web": {"limits": {"memory": "1Mi"}}})


def test_kustomize_files() -> None:
    patches = [DeploymentPatch(namespace="shop", name="cart", comment="why\nbecause",
                               containers={"app": res(requests={"cpu": "120m"}, limits={"memory": "300Mi"})}),
               DeploymentPatch(namespace="shop", name="idle", containers={})]
    files = kustomize_files(patches, resources=["../base"])
    assert sorted(files) == [KUSTOMIZATION, "shop--cart.yaml"]
    assert files["shop--cart.yaml"].startswith("# why\n# because\n")
    doc = yaml.safe_load(files["shop--cart.yaml"])
    assert doc == {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "cart", "namespace": "shop"},
                   "spec": {"template": {"spec": {"containers": [{"name": "app", "resources": {
                       "requests": {"cpu": "120m"}, "limits": {"memory": "300Mi"}}}]}}}}
    kustomization = yaml.safe_load(files[KUSTOMIZATION])
    assert kustomization["resources"] == ["../base"] and kustomization["patches"] == [{"path": "shop--cart.yaml"}]
