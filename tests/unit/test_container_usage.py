"""The container limit model (`sandbox.container_usage`): OOM above the memory limit, CFS throttling above the
CPU limit, nothing at or below them, nothing without a limit."""

from __future__ import annotations

import pytest

from pitstop.sandbox.container_usage import limited_usage, oom_interval, throttled_share

MIB = 2**20


def test_under_its_limits_a_container_uses_what_it_demands() -> None:
    u = limited_usage(cpu_demand_cores=0.2, memory_demand_bytes=200 * MIB, cpu_limit_cores=0.5,
                      memory_limit_bytes=512 * MIB, dt=2.0)
    assert (u.cpu_cores, u.memory_bytes, u.oom) == (0.2, 200 * MIB, False)
    assert u.cfs_periods == pytest.approx(20) and u.cfs_throttled_periods == 0 and u.cfs_throttled_seconds == 0


def test_memory_demand_above_the_limit_is_oom_killed_and_capped() -> None:
    u = limited_usage(cpu_demand_cores=0.2, memory_demand_bytes=300 * MIB, cpu_limit_cores=None,
                      memory_limit_bytes=256 * MIB, dt=1.0)
    assert u.oom and u.memory_bytes == 256 * MIB


def test_cpu_demand_above_the_limit_is_capped_and_throttled() -> None:
    u = limited_usage(cpu_demand_cores=0.6, memory_demand_bytes=MIB, cpu_limit_cores=0.4,
                      memory_limit_bytes=None, dt=1.0)
    assert u.cpu_cores == 0.4 and not u.oom
    assert u.cfs_periods == pytest.approx(10)
    assert u.cfs_throttled_periods == pytest.approx(10 * 2 * (1 - 0.4 / 0.6))
    assert u.cfs_throttled_seconds == pytest.approx(0.2)


def test_throttled_share_grows_with_demand_and_saturates() -> None:
    assert throttled_share(demand_cores=0.5, limit_cores=0.5) == 0
    assert throttled_share(demand_cores=0.55, limit_cores=0.5) == pytest.approx(2 * (1 - 0.5 / 0.55))
    assert throttled_share(demand_cores=1.0, limit_cores=0.5) == 1.0
    assert throttled_share(demand_cores=5.0, limit_cores=0.5) == 1.0


def test_without_limits_nothing_is_capped_or_counted() -> None:
    u = limited_usage(cpu_demand_cores=3.0, memory_demand_bytes=4096 * MIB, cpu_limit_cores=None,
                      memory_limit_bytes=None, dt=1.0)
    assert (u.cpu_cores, u.memory_bytes, u.oom, u.cfs_periods) == (3.0, 4096 * MIB, False, 0.0)


def test_oom_interval_is_a_go_duration() -> None:
    assert oom_interval(15) == "15000ms" and oom_interval(0.0001) == "1ms"
