"""Pure capacity code on synthetic histories with known answers: strategies (simple exactly, vpa within one
histogram bucket), not-enough-data, HPA skipping, policy overrides, node-plan bounds, forecast back-test,
chargeback that adds up."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from pitstop.capacity.binpack import Algorithm, NodeInfo, NodeType, lower_bound, node_types, pack, plan_nodes
from pitstop.capacity.cost import Charge, chargeback, savings, unit_prices
from pitstop.capacity.forecast import ForecastSettings, back_test, forecast_series, holt_winters, mape
from pitstop.capacity.histogram import CPU_BUCKETS, MEMORY_BUCKETS
from pitstop.capacity.policy import CapacityPolicy, PolicyError, load_policy
from pitstop.capacity.strategies import (
    ContainerSpec, HpaTargets, Resources, SimpleSettings, Status, Strategy, VpaSettings, percentile, simple, vpa,
)
from pitstop.capacity.usage import ContainerHistory, UsageAccumulator, WorkloadKey
from pitstop.capacity.workloads import WorkloadInfo, recommend_workload

MIB = 2**20
END = 1_800_000_000.0
STEP = 300.0
SPEC = ContainerSpec(name="app", requests=Resources(cpu_cores=0.5, memory_bytes=256 * MIB),
                     limits=Resources(cpu_cores=1.0, memory_bytes=512 * MIB))


def history(pods: dict[str, tuple[list[float], list[float]]], *, days: float = 14) -> ContainerHistory:
    """Per pod (cpu values, memory values), one per step ending at END."""
    h = ContainerHistory(start_unix=END - days * 86400, end_unix=END)
    for pod, (cpu, memory) in pods.items():
        h.add_cpu(pod, [(END - (len(cpu) - 1 - i) * STEP, v) for i, v in enumerate(cpu)])
        h.add_memory(pod, [(END - (len(memory) - 1 - i) * STEP, v) for i, v in enumerate(memory)])
    return h


def test_percentile_interpolates_like_prometheus() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(list(range(1, 201)), 95) == pytest.approx(190.05)
    assert math.isnan(percentile([], 95))


def test_simple_is_krr_exactly() -> None:
    a = [i / 1000 for i in range(1, 201)]  # P95 = 0.19005
    b = [2 * v for v in a]  # P95 = 0.3801: the highest over pods wins
    h = history({"p-a": (a, [300.0 * MIB] * 200), "p-b": (b, [400.0 * MIB] * 199 + [410.0 * MIB])})
    rec = simple(h, SPEC, SimpleSettings())
    assert (rec.cpu_status, rec.memory_status) == (Status.OK, Status.OK)
    assert rec.cpu_request == pytest.approx(0.3801, abs=1e-12)
    assert rec.cpu_limit is None
    assert rec.memory_request == rec.memory_limit == pytest.approx(410 * MIB * 1.15)
    e = rec.evidence
    assert (e.pods, e.cpu_points, e.memory_points, e.history_hours) == (2, 400, 400, 336)
    assert e.cpu_percentiles["p95"] == pytest.approx(0.3801) and e.memory_max_bytes == 410 * MIB


def test_simple_below_100_points_is_not_enough_data() -> None:
    h = history({"p": ([0.2] * 99, [100 * MIB] * 99)})
    rec = simple(h, SPEC, SimpleSettings())
    assert (rec.cpu_status, rec.memory_status) == (Status.NOT_ENOUGH_DATA, Status.NOT_ENOUGH_DATA)
    assert rec.cpu_request is None and rec.memory_request is None
    assert "not enough data (99 points < 100)" in rec.info
    assert simple(ContainerHistory(), SPEC, SimpleSettings()).cpu_status is Status.NO_DATA
    h = history({"p": ([0.2] * 100, [100 * MIB] * 100)})
    assert simple(h, SPEC, SimpleSettings()).cpu_status is Status.OK


def test_hpa_scaled_resources_are_skipped_unless_asked() -> None:
    h = history({"p": ([0.2] * 200, [100 * MIB] * 200)})
    hpa = HpaTargets(name="web", cpu=True)
    rec = simple(h, SPEC, SimpleSettings(), hpa)
    assert (rec.cpu_status, rec.memory_status, rec.cpu_request) == (Status.HPA, Status.OK, None)
    assert "HPA web" in rec.info
    assert vpa(h, SPEC, VpaSettings(), hpa).cpu_status is Status.HPA
    assert simple(h, SPEC, SimpleSettings(allow_hpa=True), hpa).cpu_request == pytest.approx(0.2)


def within_one_bucket(value: float, expected: float, scheme: object) -> bool:
    start, end = scheme.bucket_of(expected)  # type: ignore[attr-defined]
    return abs(value - expected) <= end - start


def test_vpa_target_and_bounds_within_one_bucket() -> None:
    steps = 14 * 288
    # 100 pods, pod i uses i/100 cores and i*10 MiB all the time: P50 0.50, P90 0.90, P95 0.95 cores
    h = history({f"p{i}": ([i / 100] * steps, [i * 10 * MIB] * steps) for i in range(1, 101)})
    rec = vpa(h, SPEC, VpaSettings())
    assert rec.cpu_request is not None and rec.memory_request is not None and rec.cpu_bounds and rec.memory_bounds
    assert within_one_bucket(rec.cpu_request / 1.15, 0.90, CPU_BUCKETS)
    assert within_one_bucket(rec.memory_request / 1.15, 900 * MIB, MEMORY_BUCKETS)
    lower, upper = rec.cpu_bounds
    assert within_one_bucket(lower / 1.15 / (1 + 0.001 / 14) ** -2, 0.50, CPU_BUCKETS)
    assert within_one_bucket(upper / 1.15 / (1 + 1 / 14), 0.95, CPU_BUCKETS)
    assert rec.cpu_limit == pytest.approx(2 * rec.cpu_request)  # the limit:request ratio is kept
    assert rec.evidence.memory_peaks == 100 * 15  # a peak per pod and 24 h interval touched


def test_vpa_floors_and_oom_bump() -> None:
    steps = 3 * 288
    tiny = vpa(history({"p": ([0.001] * steps, [20 * MIB] * steps)}, days=3), SPEC, VpaSettings())
    assert tiny.cpu_request == pytest.approx(0.025) and tiny.memory_request == pytest.approx(250 * MIB)
    h = history({"p": ([0.1] * steps, [300 * MIB] * steps)}, days=3)
    before = vpa(h, SPEC, VpaSettings()).memory_request
    h.oom_kills = 1
    after = vpa(h, SPEC, VpaSettings()).memory_request
    bump = max(300 * MIB * 1.2, 300 * MIB + 100 * MIB)  # used = max(request 256 Mi, observed 300 Mi)
    assert before is not None and after is not None and after > before
    assert within_one_bucket(after / 1.15, bump, MEMORY_BUCKETS)


def test_policy_overrides_per_team_and_names_bad_fields(tmp_path: Path) -> None:
    policy = CapacityPolicy.model_validate({
        "default": {"simple": {"cpu_percentile": 90}},
        "teams": {"analytics": {"strategy": "vpa", "vpa": {"min_memory_mib": 512}}, "identity": {"exclude": True}}})
    assert policy.strategy_for("ota", Strategy.SIMPLE) is Strategy.SIMPLE
    assert policy.strategy_for("analytics", Strategy.SIMPLE) is Strategy.VPA
    assert policy.simple_settings("ota").cpu_percentile == 90
    assert policy.vpa_settings("analytics").min_memory_mib == 512 and policy.vpa_settings("ota").min_memory_mib == 250
    info = WorkloadInfo(namespace="team-identity", name="auth", team="identity", replicas=2, containers=[SPEC])
    rec = recommend_workload(info, None, policy=policy, requested=Strategy.SIMPLE, start_unix=0, end_unix=1)
    assert rec.excluded and rec.containers == [] and rec.pod_requests(recommended=True) == (0.5, 256 * MIB)
    bad = tmp_path / "policy.yaml"
    bad.write_text("teams:\n  ota:\n    simple: {cpu_percentil: 90}\n")
    with pytest.raises(PolicyError, match=r"policy.yaml: .*teams.ota.*cpu_percentil"):
        load_policy(bad)


def test_accumulator_sums_pods_per_hour() -> None:
    acc = UsageAccumulator(start_unix=0, end_unix=4 * 3600, step_seconds=STEP)
    key = WorkloadKey(namespace="ns", workload="w")
    for pod, value in (("w-1", 0.25), ("w-2", 0.75)):
        acc.add_cpu_series(key, pod=pod, container="app", points=[(t, value) for t in range(0, 4 * 3600, 300)])
    series = acc.workloads[key].hourly_series(start_unix=0, end_unix=4 * 3600)
    assert series == pytest.approx([1.0, 1.0, 1.0])  # whole hours only, both pods together
    assert acc.samples == 2 * 48


def test_node_plan_matches_the_bound_and_honours_pods_per_node() -> None:
    node = NodeType(name="m", cpu_cores=4, memory_bytes=16 * 2**30, pods=110, hourly_price_usd=0.2)
    pods = [(1.0, 2**30)] * 8
    for algorithm in Algorithm:
        result = pack(pods, node, algorithm)
        assert (result.nodes, result.lower_bound, result.gap_percent) == (2, 2, 0.0)
        assert [u.cpu_percent for u in result.utilisation] == [100.0, 100.0]
    few_pods = node.model_copy(update={"pods": 3})
    assert lower_bound(pods, few_pods) == 3 and pack(pods, few_pods, Algorithm.FIRST_FIT).nodes == 3
    mixed = [(3.0, 2 * 2**30), (0.5, 12 * 2**30), (2.5, 1 * 2**30), (1.0, 6 * 2**30), (0.5, 4 * 2**30)] * 6
    for algorithm in Algorithm:
        result = pack(mixed, node, algorithm)
        assert result.lower_bound <= result.nodes and result.gap_percent == round(
            100 * (result.nodes - result.lower_bound) / result.lower_bound, 2)
    assert pack([(5.0, 2**30)], node, Algorithm.BEST_FIT).unplaceable == 1
    nodes = [NodeInfo(name=f"n{i}", instance_type="m", cpu_cores=4, memory_bytes=16 * 2**30, pods=110,
                      hourly_price_usd=p) for i, p in enumerate((0.2, 0.3, 0.25))]
    (t,) = node_types(nodes)
    assert t.hourly_price_usd == 0.25
    plan = plan_nodes(pods, [t], scenario="today")
    assert plan.best is not None and plan.best.hourly_cost_usd == pytest.approx(0.5)


def seasonal(hours: int, seed: int = 3) -> list[float]:
    rng = random.Random(seed)
    return [10 + 4 * math.sin(2 * math.pi * t / 24) + (2.0 if (t // 24) % 7 in (5, 6) else 0.0)
            + 0.002 * t + rng.gauss(0, 0.2) for t in range(hours)]


def test_forecast_back_test_on_a_seasonal_series() -> None:
    settings = ForecastSettings()
    series = seasonal(14 * 24)
    score = back_test(series, settings)
    assert score is not None and score < 6.0, score
    naive = mape(series[240:], [sum(series[:240]) / 240] * 96)  # a flat mean does much worse
    assert naive is not None and naive > 2 * score
    fit = holt_winters(series, horizon=24, settings=settings)
    assert fit.sigma < 1.0 and len(fit.forecast) == 24
    found = forecast_series("ns", "cpu", series, start_unix=0, settings=settings)
    assert found is not None and len(found.forecast) == len(found.band) == 4 * 168 and found.growth > 1.0
    assert forecast_series("ns", "cpu", series[:47], start_unix=0, settings=settings) is None


def test_chargeback_adds_up_and_shares_idle_proportionally() -> None:
    nodes = [NodeInfo(name="a", instance_type="m", cpu_cores=4, memory_bytes=16 * 2**30, pods=110, hourly_price_usd=0.192),
             NodeInfo(name="b", instance_type="r", cpu_cores=4, memory_bytes=32 * 2**30, pods=110, hourly_price_usd=0.252)]
    prices = unit_prices(nodes)
    assert 8 * prices.core_hour_usd + 48 * prices.gib_hour_usd == pytest.approx(0.444)
    charges = [Charge(namespace="ns1", team="t1", requested_cpu_cores=2, requested_memory_bytes=4 * 2**30,
                      used_cpu_cores=0.5, used_memory_bytes=2**30, recommended_cpu_cores=1, recommended_memory_bytes=2 * 2**30),
               Charge(namespace="ns2", team="t1", requested_cpu_cores=1, requested_memory_bytes=8 * 2**30,
                      used_cpu_cores=0.4, used_memory_bytes=6 * 2**30),
               Charge(namespace="ns3", team="t2", requested_cpu_cores=0.5, requested_memory_bytes=2**30,
                      used_cpu_cores=0.1, used_memory_bytes=2**29)]
    for basis in ("requests", "usage"):
        cb = chargeback(charges, prices, basis=basis)
        assert sum(a.hourly_usd for a in cb.by_namespace) == pytest.approx(0.444, abs=1e-5)
        assert sum(a.hourly_usd for a in cb.by_team) == pytest.approx(0.444, abs=1e-5)
        assert sum(a.idle_hourly_usd for a in cb.by_team) == pytest.approx(cb.idle_hourly_usd, abs=1e-5)
        shares = {a.name: a.idle_hourly_usd / a.allocated_hourly_usd for a in cb.by_namespace}
        assert max(shares.values()) == pytest.approx(min(shares.values()), rel=1e-3)  # proportional
    s = savings(charges, prices, current_hourly=0.444, planned_hourly=0.192)
    assert s.nodes_monthly_usd == pytest.approx(0.252 * 730)
    assert s.requests_monthly_usd > 0
