"""The data layer's part in a failover, the sandbox's way: a database endpoint record that applications read to find
the primary, one copy per region's cluster (ConfigMap `db-endpoint`: `primary: <region>` and, maintained by the
database's replication, `last_replicated_at.<region>: <RFC 3339>` for every replica).

Switching the primary to a survivor is a write to each surviving region's copy (the failing region's API server may
be gone). The recovery point objective of a switch is what the new primary had not yet received: the time from its
`last_replicated_at` to the switch (unknown when the record does not say). Where a user plugs their database: a
runbook of their own with inputs `{failing_region, survivors}` (promote a replica, switch a DNS name or a Secret),
named by failover-region's `data_layer_runbook` input; `runbooks/data-switch-primary.yaml` is the sandbox's.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

PRIMARY_KEY = "primary"
REPLICATED_AT_PREFIX = "last_replicated_at."


def replicated_at(data: Mapping[str, str], region: str) -> datetime | None:
    """When `region`'s replica last received the primary's writes, if the record says and it parses."""
    text = data.get(REPLICATED_AT_PREFIX + region)
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def rpo_seconds(data: Mapping[str, str], *, new_primary: str, switched_at: datetime) -> float | None:
    """Seconds of writes the new primary may lack (never negative); None when its replication time is unknown
    or when it already was the primary (nothing is lost)."""
    if data.get(PRIMARY_KEY) == new_primary:
        return None
    at = replicated_at(data, new_primary)
    if at is None:
        return None
    return max(0.0, (switched_at - at).total_seconds())
