"""Traffic activities (`istio.*` step types): read and set routes through the configured `TrafficRouter`
(`activities.traffic`): Istio VirtualServices, or nothing for services without a mesh.

Synchronous activities (the kubernetes client is synchronous): the worker runs them in its activity thread
pool executor. Domain errors (unknown VirtualService, undefined subset) are non-retryable; 409 conflicts are
resolved inside the router by re-reading; other API errors propagate for Temporal to retry.
"""

from __future__ import annotations

from kubernetes.client.exceptions import ApiException
from temporalio import activity

from pitstop.runbook.step_types import StepInvocation
from pitstop.steps.istio import (
    RouteArgs,
    RouteChangeResult,
    RoutesResult,
    SetHeaderRouteArgs,
    SetMirrorArgs,
    SetWeightsArgs,
    SetWeightsResult,
)

from .clients import ActivityClients
from .idempotency import undo_key
from .kube_api import KubeJson
from .kube_errors import translate_api_error
from .traffic import RouteTarget, TrafficRouter, router_for


class IstioActivities:
    def __init__(self, clients: ActivityClients) -> None:
        self._clients = clients

    def _router(self, args: RouteArgs) -> tuple[TrafficRouter, RouteTarget]:
        router = router_for(
            settings=self._clients.settings,
            api=KubeJson(self._clients.kube_client(args.region)),
            namespace=args.namespace,
            service=args.name,
            provider=args.provider,
        )
        host = getattr(args, "host", None)
        return router, RouteTarget(region=args.region, namespace=args.namespace, virtual_service=args.name, route=args.route, host=host)

    @staticmethod
    def _translate(exc: ApiException, target: RouteTarget) -> Exception:
        return translate_api_error(exc, target.what, target.region)

    @activity.defn(name="istio.get_routes")
    def get_routes(self, invocation: StepInvocation[RouteArgs]) -> RoutesResult:
        router, target = self._router(invocation.args)
        try:
            return router.get_routes(target)
        except ApiException as exc:
            raise self._translate(exc, target) from None

    @activity.defn(name="istio.set_weights")
    def set_weights(self, invocation: StepInvocation[SetWeightsArgs]) -> SetWeightsResult:
        router, target = self._router(invocation.args)
        try:
            return router.set_routes(target, invocation.args.weights, dry_run=invocation.dry_run, record_key=undo_key(invocation))
        except ApiException as exc:
            raise self._translate(exc, target) from None

    @activity.defn(name="istio.set_header_route")
    def set_header_route(self, invocation: StepInvocation[SetHeaderRouteArgs]) -> RouteChangeResult:
        args = invocation.args
        router, target = self._router(args)
        try:
            return router.set_header_route(
                target, route_name=args.route_name, headers=args.headers, subset=args.subset,
                enabled=args.enabled, dry_run=invocation.dry_run,
            )
        except ApiException as exc:
            raise self._translate(exc, target) from None

    @activity.defn(name="istio.set_mirror")
    def set_mirror(self, invocation: StepInvocation[SetMirrorArgs]) -> RouteChangeResult:
        args = invocation.args
        router, target = self._router(args)
        try:
            return router.set_mirror(target, subset=args.subset, percent=args.percent, dry_run=invocation.dry_run)
        except ApiException as exc:
            raise self._translate(exc, target) from None
