"""The global traffic authority interface: where pitstop reads and sets how traffic is spread over regions.

A GSLB, an edge DNS with weighted records (Route 53, Cloud DNS, NS1), k8gb or a CDN's origin pools all hold
per-region weights outside any one region, which is what makes them usable when a region's control plane is
gone. pitstop talks to one through `TrafficAuthority`; the failover and failback runbooks use it through the
steps `traffic.get_weights` and `traffic.set_weights` (models in `pitstop.steps.failover`).

Implementations live in `activities/traffic_authority.py` (`HttpTrafficAuthority`: the sandbox's
`sandbox.gslb`, bearer token from a file) and are chosen by `settings.traffic.authority`; docs/failover.md says
how to plug another one (implement the two methods, build it in `workers/clients.py`).

Semantics every implementation keeps: weights are integers >= 0 per region, a region's share of the traffic is
`weight / sum(weights)`; `set_weights` merges (regions it does not name keep their weight), is idempotent
(absolute values) and returns the weights as they were just before, so a failed run can put them back. With a
`key` (the step's durable undo key), a repeated call with the same key returns the previous weights recorded by
the first one, so a retry after a write that went through still hands compensation the original weights.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, Field


class TrafficAuthorityUnavailable(Exception):
    """The authority could not be reached or answered with a server error (retryable)."""


class TrafficAuthorityRefused(Exception):
    """The authority refused the request (bad token, invalid weights): a domain error, never retried."""


class WeightChange(BaseModel):
    previous: dict[str, int] = Field(description="weights just before the change")
    weights: dict[str, int] = Field(description="weights after the change")


class TrafficAuthority(Protocol):
    """The place to plug k8gb, Route 53 or a GSLB: two calls, both async, both idempotent."""

    async def get_weights(self) -> dict[str, int]: ...

    async def set_weights(self, weights: dict[str, int], *, key: str | None = None) -> WeightChange: ...


def traffic_shares(weights: dict[str, int]) -> dict[str, float]:
    """Each region's share of the global traffic (all 0 when every weight is 0)."""
    total = sum(max(0, w) for w in weights.values())
    return {region: (max(0, w) / total if total else 0.0) for region, w in weights.items()}


def load_factor(weights: dict[str, int], *, failing: str) -> float:
    """How much more traffic each surviving region gets once `failing` receives none (1.0 = no change).

    Survivors keep their relative weights, so every one of them grows by the same factor
    `sum(all weights) / sum(survivors' weights)`; no survivor with weight > 0 = infinite (nowhere to go)."""
    total = sum(max(0, w) for w in weights.values())
    survivors = total - max(0, weights.get(failing, 0))
    if total == 0:
        return 1.0
    return float("inf") if survivors <= 0 else total / survivors
