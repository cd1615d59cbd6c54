"""The global traffic authority's HTTP implementation and the `traffic.*` activities (shared task queue).

`HttpTrafficAuthority` speaks the sandbox authority's API (`sandbox/gslb.py`: `GET`/`PUT /v1/weights`, bearer
token read from a file at each call so a rotated token is picked up); it implements
`pitstop.traffic_authority.TrafficAuthority`, the interface a k8gb / Route 53 / GSLB adapter implements too
(docs/failover.md). Built by `workers/clients.py` from `settings.traffic.authority`; activities never build it.

Errors: unreachable or 5xx -> `TrafficAuthorityUnavailable` (retried by Temporal); 4xx -> `TrafficAuthorityRefused`
(non-retryable, the authority's message kept; the token never appears in it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from pitstop.runbook.step_types import StepInvocation
from pitstop.steps.failover import GetWeightsArgs, SetWeightsArgs, SetWeightsResult, WeightsResult
from pitstop.traffic_authority import (
    TrafficAuthority,
    TrafficAuthorityRefused,
    TrafficAuthorityUnavailable,
    WeightChange,
)

from .clients import ActivityClients
from .idempotency import undo_key


class HttpTrafficAuthority:
    """The sandbox's authority (or anything serving the same two calls) over HTTP with a bearer token."""

    def __init__(self, *, base_url: str, token_file: Path | None, timeout_seconds: float = 10.0,
                 client: httpx.AsyncClient | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token_file = token_file
        self.timeout_seconds = timeout_seconds
        self._client = client

    def _headers(self) -> dict[str, str]:
        if self.token_file is None:
            return {}
        try:
            token = self.token_file.read_text().strip()
        except OSError as exc:
            raise TrafficAuthorityRefused(
                f"cannot read the traffic authority's token file {self.token_file} "
                f"(settings.traffic.authority.token_file): {exc.strerror}") from None
        return {"Authorization": f"Bearer {token}"}

    async def _call(self, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"{self.base_url}/v1/weights"
        try:
            if self._client is not None:
                response = await self._client.request(method, url, json=body, headers=self._headers(),
                                                      timeout=self.timeout_seconds)
            else:
                async with httpx.AsyncClient(timeout=self.timeout_seconds) as client:
                    response = await client.request(method, url, json=body, headers=self._headers())
        except httpx.HTTPError as exc:
            raise TrafficAuthorityUnavailable(f"traffic authority at {self.base_url} unreachable: "
                                              f"{type(exc).__name__}: {exc}") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise TrafficAuthorityUnavailable(f"traffic authority at {self.base_url} answered {response.status_code}")
        try:
            answer: dict[str, Any] = response.json()
        except ValueError:
            raise TrafficAuthorityUnavailable(
                f"traffic authority at {self.base_url} answered non-JSON ({response.status_code})") from None
        if response.status_code >= 400:
            raise TrafficAuthorityRefused(f"traffic authority at {self.base_url} refused {method} /v1/weights "
                                          f"({response.status_code}): {answer.get('error', '')}")
        return answer

    async def get_weights(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in (await self._call("GET"))["weights"].items()}

    async def set_weights(self, weights: dict[str, int], *, key: str | None = None) -> WeightChange:
        body: dict[str, Any] = {"weights": weights, **({"key": key} if key else {})}
        return WeightChange.model_validate(await self._call("PUT", body))


def _weights_text(weights: dict[str, int]) -> str:
    return ", ".join(f"{region}={weight}" for region, weight in sorted(weights.items()))


class TrafficAuthorityActivities:
    def __init__(self, clients: ActivityClients) -> None:
        self._clients = clients

    def _authority(self) -> TrafficAuthority:
        return self._clients.traffic_authority_client()

    @activity.defn(name="traffic.get_weights")
    async def get_weights(self, invocation: StepInvocation[GetWeightsArgs]) -> WeightsResult:
        try:
            weights = await self._authority().get_weights()
        except TrafficAuthorityUnavailable as exc:
            raise ApplicationError(str(exc), type="TrafficAuthorityUnavailable") from None
        except TrafficAuthorityRefused as exc:
            raise ApplicationError(str(exc), type="TrafficAuthorityRefused", non_retryable=True) from None
        failing = invocation.args.failing
        survivors = sorted(r for r, w in weights.items() if w > 0 and r != failing)
        return WeightsResult(weights=weights, survivors=survivors, summary=f"weights {_weights_text(weights)}")

    @activity.defn(name="traffic.set_weights")
    async def set_weights(self, invocation: StepInvocation[SetWeightsArgs]) -> SetWeightsResult:
        wanted = invocation.args.merged()
        try:
            if invocation.dry_run:
                current = await self._authority().get_weights()
                return SetWeightsResult(previous=current, weights={**current, **wanted},
                                        changed=any(current.get(r) != w for r, w in wanted.items()),
                                        summary=f"would set {_weights_text(wanted)}")
            change = await self._authority().set_weights(wanted, key=undo_key(invocation))
        except TrafficAuthorityUnavailable as exc:
            raise ApplicationError(str(exc), type="TrafficAuthorityUnavailable") from None
        except TrafficAuthorityRefused as exc:
            raise ApplicationError(str(exc), type="TrafficAuthorityRefused", non_retryable=True) from None
        changed = any(change.previous.get(r) != w for r, w in wanted.items())
        return SetWeightsResult(previous=change.previous, weights=change.weights, changed=changed,
                                summary=f"weights {_weights_text(change.previous)} -> {_weights_text(change.weights)}")
