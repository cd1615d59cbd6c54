"""`AlertmanagerApi`: pitstop's one client of Alertmanager's HTTP API (v2): is an alert still active?

Used by the Incident workflow (`incident.alert_active`) to notice an alert that ended without its `resolved`
notification reaching pitstop (an Alertmanager restart loses its in-memory alerts; a webhook delivery can
fail for good). Read-only; never raises for an unreachable Alertmanager: the answer is then "unknown".
Built in `workers/clients.py` (or lazily from settings by `ActivityClients.alertmanager_api()`).
"""

from __future__ import annotations

import httpx

from pitstop.incidents import AlertPresence

ALERTMANAGER_TIMEOUT_SECONDS = 5.0


class AlertmanagerApi:
    """Alertmanager at `base_url`; `client` is a shared httpx client (else one per call)."""

    def __init__(
        self, *, base_url: str, timeout_seconds: float = ALERTMANAGER_TIMEOUT_SECONDS,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url
        self.timeout_seconds = timeout_seconds
        self._client = client

    async def _get_json(self, path: str, params: dict[str, str]) -> object:
        url = self.base_url.rstrip("/") + path
        if self._client is not None:
            response = await self._client.get(url, params=params, timeout=self.timeout_seconds)
        else:
            async with httpx.AsyncClient(timeout=self.timeout_seconds) as http:
                response = await http.get(url, params=params)
        response.raise_for_status()
        return response.json()

    async def alert_presence(self, *, alertname: str, fingerprint: str) -> AlertPresence:
        """Whether Alertmanager still holds the alert `fingerprint` (active, silenced, inhibited or unprocessed)."""
        params = {"active": "true", "silenced": "true", "inhibited": "true", "unprocessed": "true",
                  "filter": f'alertname="{alertname}"'}
        try:
            alerts = await self._get_json("/api/v2/alerts", params)
        except (httpx.HTTPError, ValueError) as exc:
            return AlertPresence(active=None, detail=f"Alertmanager at {self.base_url} could not be asked: {exc}")
        if not isinstance(alerts, list):
            return AlertPresence(active=None, detail=f"Alertmanager at {self.base_url} answered an unexpected body")
        active = any(isinstance(a, dict) and a.get("fingerprint") == fingerprint for a in alerts)
        return AlertPresence(active=active, detail=f"alert {alertname} {fingerprint} "
                             + ("still active" if active else "no longer active") + f" in Alertmanager at {self.base_url}")
