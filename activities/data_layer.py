"""The sandbox's data-layer activity (`data.switch_primary`): one region's copy of the database endpoint record
(pure rules in `pitstop.data_layer`). The primary found is recorded on the ConfigMap in the same write as the switch
(`pitstop.undo_values`), so a retry after the write went through still answers the original `previous_primary`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from temporalio import activity

from pitstop.data_layer import PRIMARY_KEY, rpo_seconds
from pitstop.runbook.step_types import StepInvocation
from pitstop.steps.data import SwitchPrimaryArgs, SwitchPrimaryResult
from pitstop.undo_values import EARLIER_ATTEMPT, UNDO_VALUES_ANNOTATION, recorded_previous, with_previous

from .clients import ActivityClients
from .idempotency import undo_key
from .kube_api import KubeJson
from .kube_errors import kube_errors, retry_on_conflict


class DataLayerActivities:
    def __init__(self, clients: ActivityClients) -> None:
        self._clients = clients

    @activity.defn(name="data.switch_primary")
    def switch_primary(self, invocation: StepInvocation[SwitchPrimaryArgs]) -> SwitchPrimaryResult:
        args = invocation.args
        api = KubeJson(self._clients.kube_client(args.region))
        path = f"/api/v1/namespaces/{args.namespace}/configmaps/{args.name}"
        what = f"endpoint record {args.namespace}/{args.name}"
        key = undo_key(invocation)

        def attempt() -> SwitchPrimaryResult:
            record = api.get(path)
            data: dict[str, str] = record.get("data") or {}
            annotations: dict[str, Any] = (record.get("metadata") or {}).get("annotations") or {}
            current = data.get(PRIMARY_KEY, "")
            recorded = recorded_previous(annotations, key, str)
            now = datetime.now(UTC)
            result = SwitchPrimaryResult(previous_primary=current if recorded is None else recorded.value,
                                         primary=args.primary, switched_at=now.isoformat())
            if current == args.primary:
                result.summary = (f"{what} in {args.region}: primary {args.primary}"
                                  + (EARLIER_ATTEMPT if recorded is not None else " already"))
                result.changed = recorded is not None
                return result
            result.rpo_seconds = rpo_seconds(data, new_primary=args.primary, switched_at=now)
            rpo = "unknown" if result.rpo_seconds is None else f"{result.rpo_seconds:.1f}s"
            if invocation.dry_run:
                result.summary = f"would switch {what} in {args.region} from {current} to {args.primary} (RPO {rpo})"
                return result
            api.patch(path, {"metadata": {"resourceVersion": record["metadata"]["resourceVersion"],
                                          "annotations": {UNDO_VALUES_ANNOTATION: with_previous(annotations, key, current)}},
                             "data": {PRIMARY_KEY: args.primary}}, patch_type="merge")
            result.changed = True
            result.summary = f"switched {what} in {args.region} from {current} to {args.primary} (RPO {rpo})"
            return result

        with kube_errors(what, args.region):
            return retry_on_conflict(attempt)
