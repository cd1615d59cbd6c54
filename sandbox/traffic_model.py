"""Pure traffic and resource-usage model of the sandbox fleet.

Everything here is a deterministic function of its arguments (no I/O, no clock): the live
simulator (`sandbox.simulator`) and the history backfill (`sandbox.history`) both call these, so the
14 days of backfilled history and the live metrics come from the same model.

Units: rates are requests per second, CPU in cores, memory in bytes, latency in milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from pitstop.sandbox.istio_faults import HttpFault

SECONDS_PER_HOUR = 3600.0
SECONDS_PER_DAY = 86400.0

TrafficProfile = Literal["commute", "daytime", "nightly-batch", "flat"]

# Istio's request-duration buckets are long; the sandbox keeps a shorter, still realistic set.
LATENCY_BUCKETS_MS: tuple[float, ...] = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

REGION_UTC_OFFSET_HOURS: dict[str, float] = {
    "eu-central": 1.0,
    "eu-west": 0.0,
    "us-east": -5.0,
    "us-west": -8.0,
    "ap-southeast": 8.0,
    "ap-northeast": 9.0,
}


def region_utc_offset_hours(region: str) -> float:
    """UTC offset used for a region's daily seasonality (0 for regions the model doesn't know)."""
    return REGION_UTC_OFFSET_HOURS.get(region, 0.0)


def local_hour(*, unix_seconds: float, utc_offset_hours: float) -> float:
    """Hour of day in [0, 24) at the given UTC offset."""
    return ((unix_seconds / SECONDS_PER_HOUR) + utc_offset_hours) % 24.0


def _bump(hour: float, *, center: float, width: float) -> float:
    """A Gaussian bump on the 24 h circle, 1.0 at `center`."""
    distance = min(abs(hour - center), 24.0 - abs(hour - center))
    return math.exp(-0.5 * (distance / width) ** 2)


def diurnal_factor(*, hour: float, profile: TrafficProfile, weekday: int = 2) -> float:
    """Load relative to the daily peak (0 < factor <= 1) for a local hour and day of week (0 = Monday).

    - commute: vehicles on the road, peaks around 08:00 and 17:30, low at night
    - daytime: office-hours traffic, one broad peak at 13:00
    - nightly-batch: analytics jobs, peak at 02:00
    - flat: constant
    """
    if profile == "flat":
        base = 1.0
    elif profile == "commute":
        base = 0.25 + 0.75 * max(_bump(hour, center=8.0, width=1.6), _bump(hour, center=17.5, width=2.0))
    elif profile == "daytime":
        base = 0.3 + 0.7 * _bump(hour, center=13.0, width=3.5)
    elif profile == "nightly-batch":
        base = 0.15 + 0.85 * _bump(hour, center=2.0, width=1.5)
    else:  # pragma: no cover - Literal guards this
        raise ValueError(f"unknown traffic profile {profile!r}")
    weekend = weekday >= 5
    if weekend and profile in ("commute", "daytime"):
        base *= 0.7
    return base


def diurnal_factor_at(*, unix_seconds: float, region: str, profile: TrafficProfile) -> float:
    """`diurnal_factor` at an absolute time, in the region's local time."""
    offset = region_utc_offset_hours(region)
    hour = local_hour(unix_seconds=unix_seconds, utc_offset_hours=offset)
    local_day = math.floor((unix_seconds / SECONDS_PER_HOUR + offset) / 24.0)
    weekday = (local_day + 3) % 7  # 1970-01-01 was a Thursday
    return diurnal_factor(hour=hour, profile=profile, weekday=int(weekday))


def region_traffic_share(*, weights: Mapping[str, float], region: str) -> float:
    """Share of the global vehicle traffic a region receives under the global traffic policy."""
    total = sum(max(0.0, w) for w in weights.values())
    if total <= 0.0:
        return 0.0
    return max(0.0, weights.get(region, 0.0)) / total


@dataclass(frozen=True)
class CallEdge:
    """`caller` sends `calls_per_request` requests to `callee` for each request it serves."""

    caller: str
    callee: str
    calls_per_request: float = 1.0


INGRESS_WORKLOAD = "istio-ingressgateway"


def propagate_request_rates(
    *, entry_rps: Mapping[str, float], edges: Sequence[CallEdge]
) -> dict[tuple[str, str], float]:
    """Requests per second on each (source workload, destination service) edge.

    Entry services receive their traffic from `INGRESS_WORKLOAD`; every other service receives the sum
    of its callers' rates times the edge's fan-out. The call graph must be acyclic.
    """
    callers_of: dict[str, list[CallEdge]] = {}
    services: set[str] = set(entry_rps)
    for edge in edges:
        callers_of.setdefault(edge.callee, []).append(edge)
        services.update((edge.caller, edge.callee))
    served: dict[str, float] = {}
    visiting: set[str] = set()

    def served_rps(service: str) -> float:
        if service in served:
            return served[service]
        if service in visiting:
            raise ValueError(f"call graph has a cycle through {service!r}")
        visiting.add(service)
        total = entry_rps.get(service, 0.0)
        for edge in callers_of.get(service, []):
            total += served_rps(edge.caller) * edge.calls_per_request
        visiting.discard(service)
        served[service] = total
        return total

    rates: dict[tuple[str, str], float] = {}
    for service in sorted(services):
        if service in entry_rps:
            rates[(INGRESS_WORKLOAD, service)] = entry_rps[service]
        for edge in callers_of.get(service, []):
            rates[(edge.caller, service)] = rates.get((edge.caller, service), 0.0) + served_rps(
                edge.caller
            ) * edge.calls_per_request
    return rates


def served_rps_by_service(edge_rps: Mapping[tuple[str, str], float]) -> dict[str, float]:
    """Total requests per second each destination service receives."""
    totals: dict[str, float] = {}
    for (_source, destination), rps in edge_rps.items():
        totals[destination] = totals.get(destination, 0.0) + rps
    return totals


def version_split(route_weights: Mapping[str, float]) -> dict[str, float]:
    """Fraction of requests per version from VirtualService route weights (already resolved to versions).

    Weights need not sum to 100; all-zero or empty routes give an empty split (no traffic routed).
    """
    total = sum(max(0.0, w) for w in route_weights.values())
    if total <= 0.0:
        return {}
    return {version: max(0.0, w) / total for version, w in route_weights.items() if w > 0}


def latency_multiplier(cpu_utilization: float) -> float:
    """Queueing slowdown as CPU utilisation (usage / limit) approaches 1: 1.0 below 60 %, 4.0 at 100 %."""
    u = min(max(cpu_utilization, 0.0), 1.0)
    if u <= 0.6:
        return 1.0
    return 1.0 + 3.0 * ((u - 0.6) / 0.4) ** 2


@dataclass(frozen=True)
class VersionConditions:
    """What affects one service version's requests in one region right now."""

    available_replicas: int
    base_error_ratio: float = 0.001
    fault_error_ratio: float = 0.0
    region_down: bool = False
    base_latency_ms: float = 20.0
    extra_latency_ms: float = 0.0
    cpu_utilization: float = 0.3


@dataclass(frozen=True)
class RequestOutcome:
    """Requests per second by HTTP response code, and the latency distribution (log-normal)."""

    rps_by_code: dict[str, float]
    latency_median_ms: float
    latency_sigma: float = 0.6
    error_latency_median_ms: float = 2.0


def request_outcome(*, rps: float, conditions: VersionConditions) -> RequestOutcome:
    """Split `rps` into response codes and pick a latency distribution.

    A down region or a version with no available replica answers everything with 503 (as Envoy does with
    "no healthy upstream"); otherwise the error ratio is the base ratio plus any fault's ratio, as 500s.
    """
    if conditions.region_down or conditions.available_replicas <= 0:
        return RequestOutcome(
            rps_by_code={"200": 0.0, "500": 0.0, "503": rps},
            latency_median_ms=1.0,
            latency_sigma=0.3,
            error_latency_median_ms=1.0,
        )
    error_ratio = min(1.0, max(0.0, conditions.base_error_ratio + conditions.fault_error_ratio))
    median = (
        conditions.base_latency_ms * latency_multiplier(conditions.cpu_utilization)
        + conditions.extra_latency_ms
    )
    return RequestOutcome(
        rps_by_code={"200": rps * (1.0 - error_ratio), "500": rps * error_ratio, "503": 0.0},
        latency_median_ms=median,
    )


def lognormal_cdf(*, value: float, median: float, sigma: float) -> float:
    """P(X <= value) for a log-normal X with the given median and log-space sigma."""
    if value <= 0.0:
        return 0.0
    if median <= 0.0:
        return 1.0
    z = (math.log(value) - math.log(median)) / (sigma * math.sqrt(2.0))
    return 0.5 * (1.0 + math.erf(z))


def lognormal_mean(*, median: float, sigma: float) -> float:
    return median * math.exp(0.5 * sigma * sigma)


def histogram_increments(
    *, count: float, median_ms: float, sigma: float, buckets: Sequence[float] = LATENCY_BUCKETS_MS
) -> tuple[list[float], float]:
    """Cumulative bucket increments (one per bucket, +Inf excluded) and the sum increment for `count` requests."""
    cumulative = [count * lognormal_cdf(value=le, median=median_ms, sigma=sigma) for le in buckets]
    return cumulative, count * lognormal_mean(median=median_ms, sigma=sigma)


def p95_latency_ms(*, median_ms: float, sigma: float) -> float:
    """95th percentile of the log-normal latency distribution."""
    return median_ms * math.exp(1.6448536269514722 * sigma)


@dataclass(frozen=True)
class PodUsage:
    """One container's resource usage at an instant."""

    cpu_cores: float
    memory_bytes: float
    cpu_utilization: float  # usage / limit (the saturation signal)


def pod_usage(
    *,
    rps_per_pod: float,
    nominal_peak_rps_per_pod: float,
    cpu_request_cores: float,
    cpu_limit_cores: float,
    memory_request_bytes: float,
    memory_limit_bytes: float,
    cpu_utilization_at_peak: float,
    memory_utilization_at_peak: float,
    saturated: bool = False,
    wobble: float = 0.0,
) -> PodUsage:
    """Container CPU and memory for a pod serving `rps_per_pod`.

    At the nominal peak the container uses `cpu_utilization_at_peak` x its CPU request (some services are
    over-provisioned, some run hot); an idle container uses 5 % of its request. Memory has a floor of 60 %
    of the peak working set and grows with load. `wobble` in [-1, 1] adds +-5 % noise. A saturated
    service is pinned at its CPU limit.
    """
    load = rps_per_pod / nominal_peak_rps_per_pod if nominal_peak_rps_per_pod > 0 else 0.0
    idle_cores = 0.05 * cpu_request_cores
    peak_cores = max(idle_cores, cpu_utilization_at_peak * cpu_request_cores)
    cpu = idle_cores + (peak_cores - idle_cores) * load
    cpu *= 1.0 + 0.05 * wobble
    if saturated:
        cpu = cpu_limit_cores
    cpu = min(cpu, cpu_limit_cores)
    peak_memory = memory_utilization_at_peak * memory_request_bytes
    memory = peak_memory * (0.6 + 0.4 * min(load, 1.5)) * (1.0 + 0.02 * wobble)
    memory = min(memory, memory_limit_bytes)
    utilization = cpu / cpu_limit_cores if cpu_limit_cores > 0 else 0.0
    return PodUsage(cpu_cores=cpu, memory_bytes=memory, cpu_utilization=utilization)


def wobble(*, key: str, unix_seconds: float, period_seconds: float = 300.0) -> float:
    """Deterministic smooth noise in [-1, 1] for a series `key` (same inputs, same value)."""
    phase = (sum(ord(c) * (i + 1) for i, c in enumerate(key)) % 997) / 997.0 * 2.0 * math.pi
    return math.sin(2.0 * math.pi * unix_seconds / period_seconds + phase)


@dataclass
class MonotonicCounter:
    """A counter that only grows; `advance` adds a rate over an interval."""

    value: float = 0.0

    def advance(self, *, rate_per_second: float, seconds: float) -> float:
        if rate_per_second > 0 and seconds > 0:
            self.value += rate_per_second * seconds
        return self.value


@dataclass
class LatencyHistogram:
    """Cumulative histogram state (bucket counts, sum, count) in milliseconds."""

    buckets: tuple[float, ...] = LATENCY_BUCKETS_MS
    bucket_counts: list[float] = field(default_factory=list)
    total_sum: float = 0.0
    total_count: float = 0.0

    def observe_many(self, *, count: float, median_ms: float, sigma: float) -> None:
        if count <= 0:
            return
        if not self.bucket_counts:
            self.bucket_counts = [0.0] * len(self.buckets)
        increments, sum_increment = histogram_increments(
            count=count, median_ms=median_ms, sigma=sigma, buckets=self.buckets
        )
        for i, inc in enumerate(increments):
            self.bucket_counts[i] += inc
        self.total_sum += sum_increment
        self.total_count += count


def crash_restarts(*, elapsed_seconds: float, restart_interval_seconds: float) -> int:
    """Restarts a crash-looping container accumulates over `elapsed_seconds` (one per interval)."""
    if restart_interval_seconds <= 0 or elapsed_seconds <= 0:
        return 0
    return int(elapsed_seconds // restart_interval_seconds) + 1


def route_version_weights(
    *,
    route_weights: Sequence[tuple[str, float]] | None,
    subset_versions: Mapping[str, str] | None,
    stable_version: str,
) -> dict[str, float]:
    """Resolve a VirtualService's (subset, weight) routes to version -> weight via the DestinationRule.

    No VirtualService (or no routes) sends everything to the stable version; a route without a subset
    goes to the stable version; a subset the DestinationRule doesn't define resolves to "unknown"
    (Envoy would answer 503, and so does the model since no replica has that version).
    """
    if not route_weights:
        return {stable_version: 100.0}
    weights: dict[str, float] = {}
    for subset, weight in route_weights:
        if not subset:
            version = stable_version
        else:
            version = (subset_versions or {}).get(subset) or "unknown"
        weights[version] = weights.get(version, 0.0) + weight
    return weights


# ---------------------------------------------------------------- VirtualService HTTP routes

HEADER_COHORT_SHARE = 0.10
"""Share of a service's requests that one header matcher captures.

Real header cohorts (`x-fleet-cohort: beta`, a vehicle model, an internal-user header) depend on the
clients; the model gives each `match[]` entry that has `headers` a fixed, deterministic 10 % of the
requests, so an A/B route with one matcher sees 10 % of the traffic and the default route the other 90 %.
`match[]` entries without `headers` (uri, method, ...) are not modelled: they capture nothing.
"""


@dataclass(frozen=True)
class HttpRoute:
    """One entry of a VirtualService's `spec.http`, as far as the traffic model needs it.

    `weights`: (subset, weight) destinations (subset "" = the host without a subset = stable version);
    `header_matchers`: how many `match[]` entries have `headers`; `has_match`: the route has a `match` at
    all (a route without one catches every remaining request); `mirror_subset` / `mirror_percent`: Istio's
    `mirror` (None = no mirroring) and `mirrorPercentage.value` (Istio's default is 100 %);
    `hosts`: each destination's host, parallel to `weights` (resolved by `sandbox.istio_destinations`);
    `fault`: the route's Istio `fault` block (`sandbox.istio_faults`).
    """

    weights: tuple[tuple[str, float], ...]
    header_matchers: int = 0
    has_match: bool = False
    mirror_subset: str | None = None
    mirror_percent: float = 100.0
    hosts: tuple[str, ...] = ()
    fault: HttpFault | None = None


@dataclass(frozen=True)
class TrafficSplit:
    """Fractions of a service's requests per destination version.

    `served`: requests answered by each version (sums to 1 when a default route exists);
    `mirrored`: extra copies sent to a mirror destination (their responses are discarded by Envoy).
    """

    served: dict[str, float]
    mirrored: dict[str, float] = field(default_factory=dict)

    def total(self) -> dict[str, float]:
        """Requests each version receives (served + mirrored) — what its sidecar reports and its pods serve."""
        out = dict(self.served)
        for version, fraction in self.mirrored.items():
            out[version] = out.get(version, 0.0) + fraction
        return out


def _subset_version(subset: str, subset_versions: Mapping[str, str] | None, stable_version: str) -> str:
    if not subset:
        return stable_version
    return (subset_versions or {}).get(subset) or "unknown"


def route_capture_shares(routes: Sequence[HttpRoute], *, cohort_share: float = HEADER_COHORT_SHARE) -> list[float]:
    """Fraction of all requests each route answers, evaluating routes in order like Envoy.

    A route with header matchers captures `header_matchers x cohort_share` of all requests (cohorts are
    disjoint), bounded by what earlier routes left; a route without `match` captures everything left;
    a route with only non-header matches captures nothing. Requests no route captures get a 404 from
    Envoy and never reach a destination.
    """
    remaining = 1.0
    shares: list[float] = []
    for route in routes:
        if not route.has_match:
            captured = remaining
        else:
            captured = min(remaining, max(0.0, route.header_matchers * cohort_share))
        shares.append(captured)
        remaining -= captured
    return shares


def http_traffic_split(
    *,
    routes: Sequence[HttpRoute] | None,
    subset_versions: Mapping[str, str] | None,
    stable_version: str,
    cohort_share: float = HEADER_COHORT_SHARE,
) -> TrafficSplit:
    """Per-version fractions of a service's requests under its VirtualService's HTTP routes.

    Header-match routes take their cohorts' share (`route_capture_shares`), the rest follows the weighted
    default route; each route's share splits by its destinations' weights, resolved to versions through
    the DestinationRule subsets. `mirror` adds `mirror_percent` % of the route's share as extra requests
    on the mirror's version. Istio reports mirrored requests at the mirror's sidecar like any other
    request (same `istio_requests_total` labels; only the Host gets a `-shadow` suffix, which is not a
    metric label), so the simulator cannot and does not tell them apart in the metrics either.
    No VirtualService (or no routes) sends everything to the stable version.
    """
    if not routes:
        return TrafficSplit(served={stable_version: 1.0})
    served: dict[str, float] = {}
    mirrored: dict[str, float] = {}
    for route, share in zip(routes, route_capture_shares(routes, cohort_share=cohort_share), strict=True):
        if share <= 0.0:
            continue
        weights = route_version_weights(route_weights=route.weights or None, subset_versions=subset_versions,
                                        stable_version=stable_version)
        for version, fraction in version_split(weights).items():
            served[version] = served.get(version, 0.0) + share * fraction
        if route.mirror_subset is not None:
            percent = min(100.0, max(0.0, route.mirror_percent))
            if percent > 0.0:
                version = _subset_version(route.mirror_subset, subset_versions, stable_version)
                mirrored[version] = mirrored.get(version, 0.0) + share * percent / 100.0
    return TrafficSplit(served=served, mirrored=mirrored)
