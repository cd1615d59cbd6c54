"""What a container's limits do to its usage, as the kernel would: pure functions the simulator calls.

A service's demand is intrinsic: it comes from its load and its model (`sandbox.traffic_model.pod_usage`
evaluated at the service's reference requests, the ones its fleet spec declares), not from whatever requests
and limits its pods carry today. A rightsizing change that lowers a limit therefore does not lower the demand:

- memory: a working set that would exceed the memory limit is OOM-killed by the kernel. The reported
  working set is capped at the limit, and the pod is marked for kwok's `pitstop-pod-oom-kill` Stage
  (`sandbox/kwok/stages.yaml`), which restarts its container with `lastState.terminated.reason: OOMKilled`
  (exit code 137) every `OOM_REFILL_SECONDS` (the time the working set takes to grow back to the limit),
  for as long as the demand stays above the limit.
- CPU: a CFS quota below demand caps usage at the limit and throttles. Every 100 ms CFS period of a
  container with a CPU limit counts in `container_cpu_cfs_periods_total`; a period in which the quota ran
  out counts in `container_cpu_cfs_throttled_periods_total`. The throttled share of periods is
  `min(1, 2 x (1 - limit / demand))` (a demand 10 % over the limit throttles about a fifth of the periods,
  twice the limit or more throttles every one); at or below the limit nothing is throttled.
  A container without a CPU limit is never throttled and uses what it demands.
"""

from __future__ import annotations

from dataclasses import dataclass

CFS_PERIOD_SECONDS = 0.1
OOM_REFILL_SECONDS = 15.0
OOM_LABEL = "pitstop.dev/oom-kill"  # set by the simulator, read by kwok's pitstop-pod-oom-kill Stage
OOM_INTERVAL_ANNOTATION = "pitstop.dev/oom-kill-interval"  # Go duration between kills


@dataclass(frozen=True)
class LimitedUsage:
    """A container's usage under its limits over one interval."""

    cpu_cores: float  # what it used (demand capped at the CPU limit)
    memory_bytes: float  # working set (demand capped at the memory limit)
    cfs_periods: float  # CFS periods elapsed in the interval (0 without a CPU limit)
    cfs_throttled_periods: float
    cfs_throttled_seconds: float  # time the container wanted to run but had no quota
    oom: bool  # the memory demand exceeds the limit: the kernel kills it


def throttled_share(*, demand_cores: float, limit_cores: float) -> float:
    """Share of CFS periods in which the quota runs out (0 at or below the limit)."""
    if limit_cores <= 0 or demand_cores <= limit_cores:
        return 0.0
    return min(1.0, 2.0 * (1.0 - limit_cores / demand_cores))


def limited_usage(*, cpu_demand_cores: float, memory_demand_bytes: float, cpu_limit_cores: float | None,
                  memory_limit_bytes: float | None, dt: float) -> LimitedUsage:
    """Usage of a container over `dt` seconds given its demand and limits (None: no limit)."""
    cpu = cpu_demand_cores if cpu_limit_cores is None else min(cpu_demand_cores, cpu_limit_cores)
    periods = 0.0 if cpu_limit_cores is None else dt / CFS_PERIOD_SECONDS
    share = 0.0 if cpu_limit_cores is None else throttled_share(demand_cores=cpu_demand_cores,
                                                                limit_cores=cpu_limit_cores)
    oom = memory_limit_bytes is not None and memory_demand_bytes > memory_limit_bytes
    memory = memory_demand_bytes if memory_limit_bytes is None else min(memory_demand_bytes, memory_limit_bytes)
    return LimitedUsage(cpu_cores=cpu, memory_bytes=memory, cfs_periods=periods,
                        cfs_throttled_periods=periods * share,
                        cfs_throttled_seconds=max(0.0, cpu_demand_cores - cpu) * dt,
                        oom=oom)


def oom_interval(seconds: float = OOM_REFILL_SECONDS) -> str:
    """The Go duration kwok's Stage waits between kills."""
    return f"{max(1, round(seconds * 1000))}ms"
