"""The pure failover decisions: region verdicts and hysteresis (`pitstop.region_health`), the survivors'
capacity plan (`pitstop.failover_capacity`), load factors (`pitstop.traffic_authority`), quantities, and the
step arguments of the failover steps."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from pitstop.failover_capacity import (
    NodeCapacity,
    QuotaUsage,
    RegionCapacityInventory,
    ServiceCapacity,
    plan_failover_capacity,
    required_replicas,
)
from pitstop.quantities import parse_quantity
from pitstop.region_health import (
    RegionHysteresis,
    RegionReading,
    RegionVerdict,
    SignalQueries,
    SloThresholds,
    evaluate_region,
)
from pitstop.steps.failover import CapacityPlanArgs, SetWeightsArgs
from pitstop.traffic_authority import load_factor, traffic_shares

BAD, HEALTHY, NONE = RegionVerdict.BAD, RegionVerdict.HEALTHY, RegionVerdict.INCONCLUSIVE


def reading(**values: float | None) -> RegionReading:
    return RegionReading(region="us-east", at=0.0, **values)


def test_a_region_is_bad_when_any_signal_breaches_and_healthy_only_with_data() -> None:
    thresholds = SloThresholds(max_error_ratio=0.05, max_p95_ms=500)
    assert evaluate_region(reading(error_ratio=0.9, probe_success=0), thresholds).verdict is BAD
    slow = evaluate_region(reading(error_ratio=0.0, p95_ms=900, probe_success=1), thresholds)
    assert slow.verdict is BAD and slow.breaches == ["p95 900ms > 500ms"]
    assert evaluate_region(reading(error_ratio=0.01, p95_ms=40, probe_success=1), thresholds).verdict is HEALTHY
    # a drained region: no traffic, but its edge probe answers
    assert evaluate_region(reading(probe_success=1), thresholds).verdict is HEALTHY
    assert evaluate_region(reading(probe_success=0), thresholds).verdict is BAD
    assert evaluate_region(reading(availability=0.2), thresholds).verdict is BAD
    # no data at all never passes
    assert evaluate_region(reading(), thresholds).verdict is NONE
    assert evaluate_region(reading(error_ratio=math.nan, p95_ms=math.nan), thresholds).verdict is NONE


def test_hysteresis_needs_n_bad_in_a_row_and_a_flap_resets_it() -> None:
    confirm = RegionHysteresis(expect=BAD, required=3, max_evaluations=6)
    met = confirm.decide([BAD, BAD, BAD])
    assert met.met and met.done and met.first_expected_index == 0
    flap = confirm.decide([BAD, BAD, HEALTHY])
    assert not flap.met and not flap.done and flap.streak == 0
    assert confirm.decide([BAD, BAD, HEALTHY, BAD, BAD, BAD]).first_expected_index == 3
    # 6 evaluations at most: after a flap at the 5th, 3 in a row can no longer happen
    gave_up = confirm.decide([BAD, BAD, HEALTHY, BAD, HEALTHY])
    assert not gave_up.met and gave_up.done and "within 6 (longest run 2)" in gave_up.reason
    assert not confirm.decide([BAD, NONE, BAD]).met  # no data breaks the streak, never extends it


def test_hysteresis_for_recovery_counts_healthy_evaluations() -> None:
    recovered = RegionHysteresis(expect=HEALTHY, required=2, max_evaluations=10)
    assert recovered.decide([BAD, HEALTHY, HEALTHY]).met
    assert not recovered.decide([HEALTHY, BAD]).met


def test_signal_queries_fill_region_window_and_services() -> None:
    queries = SignalQueries().render(region="us-east", window="30s", critical_services=["api-gateway", "vehicle-auth"])
    assert set(queries) == {"error_ratio", "p95_ms", "probe_success", "availability"}
    assert 'region="us-east"' in queries["error_ratio"] and "[30s]" in queries["error_ratio"]
    assert 'deployment=~"api-gateway|vehicle-auth"' in queries["availability"]
    assert "availability" not in SignalQueries().render(region="us-east", window="1m", critical_services=[])


def test_load_factor_and_shares() -> None:
    assert load_factor({"eu": 100, "us": 100}, failing="us") == 2.0
    assert load_factor({"eu": 100, "us": 50, "ap": 50}, failing="us") == pytest.approx(200 / 150)
    assert math.isinf(load_factor({"eu": 0, "us": 100}, failing="us"))
    assert traffic_shares({"eu": 100, "us": 0}) == {"eu": 1.0, "us": 0.0}


def inventory(region: str, *, quota_cpu: float | None = None, hpa_max: int | None = None,
              free_cpu: float = 100.0) -> RegionCapacityInventory:
    return RegionCapacityInventory(
        region=region,
        services=[ServiceCapacity(namespace="shop", name="api", replicas=3, cpu_request=0.5, memory_request=2**28,
                                  hpa_max_replicas=hpa_max),
                  ServiceCapacity(namespace="shop", name="db-proxy", replicas=2, cpu_request=0.25,
                                  memory_request=2**27)],
        quotas=[] if quota_cpu is None else [QuotaUsage(namespace="shop", name="compute",
                                                        hard={"requests.cpu": quota_cpu, "pods": 50},
                                                        used={"requests.cpu": 2.0, "pods": 5})],
        nodes=NodeCapacity(schedulable_nodes=3, free_cpu=free_cpu, free_memory=2.0**40, free_pods=100),
    )


def test_capacity_plan_scales_survivors_callees_first_and_keeps_the_originals() -> None:
    plan = plan_failover_capacity([inventory("eu")], weights={"eu": 100, "us": 100}, failing="us",
                                  order=["shop/db-proxy", "shop/api"])
    assert plan.sufficient and plan.load_factor == 2.0 and not plan.shortages
    assert [(i.name, i.replicas, i.original) for i in plan.items] == [("db-proxy", 4, 2), ("api", 6, 3)]
    assert required_replicas(3, factor=2.0, headroom=0.1) == 7
    assert required_replicas(0, factor=2.0, headroom=0.1) == 0


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"quota_cpu": 3.0}, "quota shop/compute requests.cpu: needs 2 more, 1 free"),
    ({"hpa_max": 4}, "HorizontalPodAutoscaler allows 4"),
    ({"free_cpu": 1.0}, "nodes have 1 cpu free"),
])
def test_capacity_plan_is_short_on_quota_hpa_or_nodes(kwargs: dict[str, float], expected: str) -> None:
    plan = plan_failover_capacity([inventory("eu", **kwargs)], weights={"eu": 100, "us": 100}, failing="us")  # type: ignore[arg-type]
    assert not plan.sufficient
    assert any(expected in s for s in plan.shortages), plan.shortages


def test_no_survivor_with_weight_is_short() -> None:
    plan = plan_failover_capacity([inventory("eu")], weights={"eu": 0, "us": 100}, failing="us")
    assert not plan.sufficient and "no region but us" in plan.shortages[0]


def test_quantities() -> None:
    assert parse_quantity("250m") == 0.25
    assert parse_quantity("512Mi") == 512 * 2**20
    assert parse_quantity("2Gi") == 2 * 2**30
    assert parse_quantity("1.5") == 1.5
    assert parse_quantity("1k") == 1000
    assert parse_quantity(None) == 0.0
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity("lots")


def test_step_arguments() -> None:
    assert SetWeightsArgs(region="us", weight=0).merged() == {"us": 0}
    assert SetWeightsArgs(weights={"eu": 100, "us": 100}).merged() == {"eu": 100, "us": 100}
    with pytest.raises(ValidationError, match="go together"):
        SetWeightsArgs(region="us")
    with pytest.raises(ValidationError, match="give `weights`"):
        SetWeightsArgs()
    args = CapacityPlanArgs(inventories=[], weights={"eu": 1}, failing="us",
                            order=[{"namespace": "shop", "workload": "api"}, "shop/db"])  # type: ignore[list-item]
    assert args.order == ["shop/api", "shop/db"]
