"""pitstop's one interface to Alertmanager's HTTP API (v2): is an alert still active?

Used by the Incident workflow (`incident.alert_active`) to notice an alert that ended without its `resolved`
notification reaching pitstop (an Alertmanager restart loses its in-memory alerts; a webhook delivery can
fail for good). Read-only; never raises for an unreachable Alertmanager: the answer is then "unknown".
"""

from __future__ import annotations

import httpx

from pitstop.incidents import AlertPresence


async def alert_presence(base_url: str, *, alertname: str, fingerprint: str, timeout_seconds: float = 5.0
                         ) -> AlertPresence:
    """Whether Alertmanager still holds the alert `fingerprint` (active, silenced, inhibited or unprocessed)."""
    url = base_url.rstrip("/") + "/api/v2/alerts"
    params = {"active": "true", "silenced": "true", "inhibited": "true", "unprocessed": "true",
              "filter": f'alertname="{alertname}"'}
    try:
        async with httpx.AsyncClient(timeout=timeout_seconds) as http:
            response = await http.get(url, params=params)
            response.raise_for_status()
            alerts = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        return AlertPresence(active=None, detail=f"Alertmanager at {base_url} could not be asked: {exc}")
    if not isinstance(alerts, list):
        return AlertPresence(active=None, detail=f"Alertmanager at {base_url} answered an unexpected body")
    active = any(isinstance(a, dict) and a.get("fingerprint") == fingerprint for a in alerts)
    return AlertPresence(active=active, detail=f"alert {alertname} {fingerprint} "
                         + ("still active" if active else "no longer active") + f" in Alertmanager at {base_url}")
