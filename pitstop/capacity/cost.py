"""Cost and chargeback: node prices (from the nodes' price label, or a price file) turned into cost per team and
namespace, by requests and by usage, with idle capacity shared proportionally; monthly projection; savings.

A node's hourly price is split into a CPU part and a memory part with Kubecost's default price ratio (0.031611 USD
per core-hour to 0.004237 USD per GiB-hour, i.e. one core costs as much as ~7.46 GiB): one price per core-hour and
per GiB-hour for the cluster, such that the cluster's capacity at those prices costs exactly its nodes' price.
Each workload is charged its requests (or its mean usage) at those prices; what nobody is charged (idle capacity)
is shared in proportion to each one's charge, so the allocations add up to the cluster's cost. A month is 730 h.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from .binpack import NodeInfo

GIB = 2**30
HOURS_PER_MONTH = 730.0
CPU_TO_GIB_PRICE_RATIO = 0.031611 / 0.004237  # Kubecost's default pricing


class UnitPrices(BaseModel):
    cluster_hourly_usd: float
    core_hour_usd: float
    gib_hour_usd: float


def unit_prices(nodes: Sequence[NodeInfo], *, default_hourly_usd: float = 0.0) -> UnitPrices:
    """Per core-hour and GiB-hour prices of a cluster (nodes without a price count at `default_hourly_usd`)."""
    total = sum(n.hourly_price_usd if n.hourly_price_usd is not None else default_hourly_usd for n in nodes)
    cores = sum(n.cpu_cores for n in nodes)
    gib = sum(n.memory_bytes for n in nodes) / GIB
    denominator = CPU_TO_GIB_PRICE_RATIO * cores + gib
    gib_price = total / denominator if denominator else 0.0
    return UnitPrices(cluster_hourly_usd=total, core_hour_usd=gib_price * CPU_TO_GIB_PRICE_RATIO, gib_hour_usd=gib_price)


class Charge(BaseModel):
    """What one workload is charged for: its requests and its mean usage (all replicas)."""

    namespace: str
    team: str
    requested_cpu_cores: float
    requested_memory_bytes: float
    used_cpu_cores: float
    used_memory_bytes: float
    recommended_cpu_cores: float = 0.0
    recommended_memory_bytes: float = 0.0


class Allocation(BaseModel):
    name: str
    allocated_hourly_usd: float = Field(description="its requests (or usage) at the unit prices")
    idle_hourly_usd: float = Field(description="its share of what nobody is charged")
    hourly_usd: float
    monthly_usd: float


class Chargeback(BaseModel):
    basis: str = Field(description="requests or usage")
    by_namespace: list[Allocation]
    by_team: list[Allocation]
    cluster_hourly_usd: float
    idle_hourly_usd: float


def _price(p: UnitPrices, cpu: float, memory: float) -> float:
    return cpu * p.core_hour_usd + memory / GIB * p.gib_hour_usd


def chargeback(charges: Sequence[Charge], prices: UnitPrices, *, basis: str) -> Chargeback:
    """Allocations per namespace and team; they add up to the cluster's hourly cost (when anything is charged)."""
    raw: dict[tuple[str, str], float] = {}
    for c in charges:
        cpu, memory = ((c.requested_cpu_cores, c.requested_memory_bytes) if basis == "requests"
                       else (c.used_cpu_cores, c.used_memory_bytes))
        raw[(c.namespace, c.team)] = raw.get((c.namespace, c.team), 0.0) + _price(prices, cpu, memory)
    charged = sum(raw.values())
    idle = prices.cluster_hourly_usd - charged
    scale = prices.cluster_hourly_usd / charged if charged > 0 else 0.0

    def group(index: int) -> list[Allocation]:
        totals: dict[str, float] = {}
        for key, value in raw.items():
            totals[key[index]] = totals.get(key[index], 0.0) + value
        return [Allocation(name=name, allocated_hourly_usd=round(v, 6), idle_hourly_usd=round(v * scale - v, 6),
                           hourly_usd=round(v * scale, 6), monthly_usd=round(v * scale * HOURS_PER_MONTH, 2))
                for name, v in sorted(totals.items(), key=lambda kv: -kv[1])]

    return Chargeback(basis=basis, by_namespace=group(0), by_team=group(1),
                      cluster_hourly_usd=round(prices.cluster_hourly_usd, 6), idle_hourly_usd=round(idle, 6))


class Savings(BaseModel):
    requests_monthly_usd: float = Field(description="today's requests minus recommended ones, at the unit prices")
    nodes_monthly_usd: float | None = Field(None, description="the cluster today minus the recommended node plan")


def savings(charges: Sequence[Charge], prices: UnitPrices, *, current_hourly: float | None,
            planned_hourly: float | None) -> Savings:
    now = sum(_price(prices, c.requested_cpu_cores, c.requested_memory_bytes) for c in charges)
    then = sum(_price(prices, c.recommended_cpu_cores, c.recommended_memory_bytes) for c in charges)
    nodes = (round((current_hourly - planned_hourly) * HOURS_PER_MONTH, 2)
             if current_hourly is not None and planned_hourly is not None else None)
    return Savings(requests_monthly_usd=round((now - then) * HOURS_PER_MONTH, 2), nodes_monthly_usd=nodes)
