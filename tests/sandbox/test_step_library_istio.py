"""Traffic step activities against real VirtualService/DestinationRule objects in the sandbox API server
(Istio's CRDs with their real schemas): weights, idempotence, 409 conflicts, dry runs, header routes, mirroring;
and a step and a release changing the same route of a VirtualService with several routes (one traffic router)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from pitstop.activities.clients import ActivityClients
from pitstop.activities.delivery import ReleaseClusterActivities
from pitstop.activities.istio import IstioActivities
from pitstop.activities.kube_api import KubeJson
from pitstop.activities.traffic import ISTIO_GROUP_VERSION, IstioRouter, RouteTarget
from pitstop.delivery.models import RestoreInput, RoutesInput, TargetInput
from pitstop.delivery.routing import RouteState, desired_http
from pitstop.delivery.spec import ReleaseTarget
from pitstop.runbook.step_types import StepInvocation
from pitstop.steps.istio import HeaderMatch, RouteArgs, SetHeaderRouteArgs, SetMirrorArgs, SetWeightsArgs
from pitstop.traffic_routes import route_weights
from pitstop.sandbox.clusters import SandboxClusters

from .step_library_support import (
    NAMESPACE,
    REGION,
    WORKER_SA,
    Recorder,
    apply_deploy_rbac,
    closed_after,
    create_deployment,
    deployment_manifest,
    impersonating,
    sandbox_activity_clients,
    unique,
)

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def clients(kube_sandbox: SandboxClusters) -> Iterator[ActivityClients]:
    yield from closed_after(sandbox_activity_clients(kube_sandbox, traffic={"services_without_mesh": [f"{NAMESPACE}/legacy-batch"]}))


@pytest.fixture
def api(clients: ActivityClients) -> KubeJson:
    return KubeJson(clients.kube[REGION])


def vs_path(name: str = "") -> str:
    base = f"/apis/{ISTIO_GROUP_VERSION}/namespaces/{NAMESPACE}/virtualservices"
    return f"{base}/{name}" if name else base


@pytest.fixture
def service(api: KubeJson) -> str:
    """A service with stable/canary subsets and a VirtualService sending everything to stable."""
    name = unique("checkout")
    api.post(
        f"/apis/{ISTIO_GROUP_VERSION}/namespaces/{NAMESPACE}/destinationrules",
        {
            "apiVersion": ISTIO_GROUP_VERSION, "kind": "DestinationRule", "metadata": {"name": name},
            "spec": {"host": name, "subsets": [{"name": "stable", "labels": {"version": "stable"}},
                                                {"name": "canary", "labels": {"version": "canary"}}]},
        },
    )
    api.post(
        vs_path(),
        {
            "apiVersion": ISTIO_GROUP_VERSION, "kind": "VirtualService", "metadata": {"name": name},
            "spec": {"hosts": [name], "http": [{"name": "primary", "route": [
                {"destination": {"host": name, "subset": "stable", "port": {"number": 8080}}, "weight": 100}]}]},
        },
    )
    return name


def call(args: Any, *, dry_run: bool = False, step_id: str = "traffic") -> StepInvocation[Any]:
    return StepInvocation[type(args)](args=args, dry_run=dry_run, run_id="run-1", step_id=step_id)  # type: ignore[misc]


def test_set_weights_is_absolute_idempotent_and_previewable(clients: ActivityClients, api: KubeJson, service: str) -> None:
    istio, env = IstioActivities(clients), Recorder()
    weights = SetWeightsArgs(region=REGION, namespace=NAMESPACE, name=service, weights={"stable": 90, "canary": 10})

    before = api.get(vs_path(service))
    preview = env.run(istio.set_weights, call(weights, dry_run=True))
    assert preview.changed and preview.previous == {"stable": 100} and preview.summary.startswith("would set")
    assert api.get(vs_path(service))["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]

    first = env.run(istio.set_weights, call(weights))
    assert (first.changed, first.previous, first.weights) == (True, {"stable": 100}, {"stable": 90, "canary": 10})
    route = api.get(vs_path(service))["spec"]["http"][0]["route"]
    assert route == [
        {"destination": {"host": service, "subset": "stable", "port": {"number": 8080}}, "weight": 90},
        {"destination": {"host": service, "subset": "canary"}, "weight": 10},
    ]
    version = api.get(vs_path(service))["metadata"]["resourceVersion"]
    # Temporal retrying the step after its update went through: the weights it found first, not its own
    retry = env.run(istio.set_weights, call(weights))
    assert (retry.changed, retry.previous, retry.weights) == (True, {"stable": 100}, {"stable": 90, "canary": 10})
    assert retry.summary.endswith("(by an earlier attempt of this step)")
    other_step = env.run(istio.set_weights, call(weights, step_id="traffic-again"))
    assert other_step.changed is False and other_step.previous == {"stable": 90, "canary": 10}
    assert api.get(vs_path(service))["metadata"]["resourceVersion"] == version  # no write at all

    routes = env.run(istio.get_routes, call(RouteArgs(region=REGION, namespace=NAMESPACE, name=service)))
    assert routes.provider == "istio" and routes.weights == {"stable": 90, "canary": 10}


def test_a_409_conflict_is_resolved_by_re_reading(clients: ActivityClients, api: KubeJson, service: str) -> None:
    """Another writer changes the VirtualService between our read and our write: the API server answers
    409 (stale resourceVersion); the router re-reads and applies the weights on top of the other change."""

    class RacingRouter(IstioRouter):
        raced = False

        def _read_virtual_service(self, target: RouteTarget) -> dict[str, Any]:
            vs = super()._read_virtual_service(target)
            if not self.raced:
                self.raced = True
                other = api.get(vs_path(service))
                other["metadata"].setdefault("labels", {})["touched-by"] = "someone-else"
                api.put(vs_path(service), other)
            return vs

    router = RacingRouter(api)
    target = RouteTarget(region=REGION, namespace=NAMESPACE, virtual_service=service)
    result = router.set_routes(target, {"stable": 50, "canary": 50}, dry_run=False)
    assert result.changed and result.conflicts == 1
    vs = api.get(vs_path(service))
    assert vs["metadata"]["labels"]["touched-by"] == "someone-else"  # the other writer's change survived
    assert [d["weight"] for d in vs["spec"]["http"][0]["route"]] == [50, 50]


def test_domain_errors_are_non_retryable(clients: ActivityClients, service: str) -> None:
    istio, env = IstioActivities(clients), Recorder()
    with pytest.raises(ApplicationError, match=f"virtualservice {NAMESPACE}/no-such-vs in region {REGION} not found") as info:
        env.run(istio.set_weights, call(SetWeightsArgs(region=REGION, namespace=NAMESPACE, name="no-such-vs", weights={"stable": 100})))
    assert info.value.non_retryable
    with pytest.raises(ApplicationError, match=r"subsets \['blue'\] are not defined") as info:
        env.run(istio.set_weights, call(SetWeightsArgs(region=REGION, namespace=NAMESPACE, name=service, weights={"stable": 50, "blue": 50})))
    assert info.value.non_retryable


def test_header_route_and_mirror(clients: ActivityClients, api: KubeJson, service: str) -> None:
    istio, env = IstioActivities(clients), Recorder()
    ab = SetHeaderRouteArgs(region=REGION, namespace=NAMESPACE, name=service, subset="canary",
                            headers={"x-pitstop-cohort": HeaderMatch(exact="beta")})
    added = env.run(istio.set_header_route, call(ab))
    assert added.changed
    http = api.get(vs_path(service))["spec"]["http"]
    assert http[0]["name"] == "pitstop-header-route" and http[0]["match"] == [{"headers": {"x-pitstop-cohort": {"exact": "beta"}}}]
    assert http[1]["name"] == "primary"
    assert env.run(istio.set_header_route, call(ab)).changed is False

    mirror = env.run(istio.set_mirror, call(SetMirrorArgs(region=REGION, namespace=NAMESPACE, name=service, subset="canary", percent=25)))
    assert mirror.changed
    primary = api.get(vs_path(service))["spec"]["http"][1]
    assert primary["mirror"] == {"host": service, "subset": "canary"} and primary["mirrorPercentage"] == {"value": 25.0}

    removed = env.run(istio.set_header_route, call(ab.model_copy(update={"enabled": False})))
    assert removed.changed and [r["name"] for r in api.get(vs_path(service))["spec"]["http"]] == ["primary"]
    unmirrored = env.run(istio.set_mirror, call(SetMirrorArgs(region=REGION, namespace=NAMESPACE, name=service, subset=None)))
    assert unmirrored.changed and "mirror" not in api.get(vs_path(service))["spec"]["http"][0]


def test_services_without_a_mesh_use_the_do_nothing_router(clients: ActivityClients) -> None:
    istio, env = IstioActivities(clients), Recorder()
    result = env.run(istio.set_weights, call(SetWeightsArgs(region=REGION, namespace=NAMESPACE, name="legacy-batch", weights={"stable": 100})))
    assert result.provider == "none" and result.changed is False and "no mesh" in result.summary
    explicit = env.run(istio.get_routes, call(RouteArgs(region=REGION, namespace=NAMESPACE, name="anything", provider="none")))
    assert explicit.provider == "none"


def test_traffic_steps_work_with_the_deploy_rbac(kube_sandbox: SandboxClusters, service: str) -> None:
    apply_deploy_rbac(kube_sandbox)
    as_worker = impersonating(kube_sandbox, WORKER_SA)
    try:
        istio, env = IstioActivities(as_worker), Recorder()
        weights = SetWeightsArgs(region=REGION, namespace=NAMESPACE, name=service, weights={"stable": 80, "canary": 20})
        assert env.run(istio.set_weights, call(weights)).changed
        assert env.run(istio.get_routes, call(RouteArgs(region=REGION, namespace=NAMESPACE, name=service))).weights == {"stable": 80, "canary": 20}
        ab = SetHeaderRouteArgs(region=REGION, namespace=NAMESPACE, name=service, subset="canary", headers={"x-b": HeaderMatch(prefix="1")})
        assert env.run(istio.set_header_route, call(ab)).changed
        assert env.run(istio.set_mirror, call(SetMirrorArgs(region=REGION, namespace=NAMESPACE, name=service, subset="canary"))).changed
    finally:
        for api_client in as_worker.kube.values():
            api_client.close()


def routes_of(name: str) -> list[dict[str, Any]]:
    host = f"{name}.{NAMESPACE}.svc.cluster.local"
    return [
        {"name": "internal", "match": [{"headers": {"x-internal": {"exact": "1"}}}],
         "route": [{"destination": {"host": host, "subset": "stable"}}]},
        {"name": "primary", "timeout": "5s",
         "route": [{"destination": {"host": host, "subset": "stable", "port": {"number": 8080}}, "weight": 100}]},
        {"name": "fallback", "route": [{"destination": {"host": host, "subset": "stable"}, "weight": 100}]},
    ]


@pytest.fixture
def multi_route_service(clients: ActivityClients, api: KubeJson) -> str:
    """A Deployment, stable/canary subsets, and a VirtualService with three HTTP routes."""
    name = unique("orders")
    create_deployment(clients.kube[REGION], deployment_manifest(name, "registry.pitstop.dev/orders:v1", replicas=1))
    api.post(f"/apis/{ISTIO_GROUP_VERSION}/namespaces/{NAMESPACE}/destinationrules", {
        "apiVersion": ISTIO_GROUP_VERSION, "kind": "DestinationRule", "metadata": {"name": name},
        "spec": {"host": f"{name}.{NAMESPACE}.svc.cluster.local",
                 "subsets": [{"name": "stable", "labels": {"version": "stable"}}, {"name": "canary", "labels": {"version": "canary"}}]},
    })
    api.post(vs_path(), {
        "apiVersion": ISTIO_GROUP_VERSION, "kind": "VirtualService", "metadata": {"name": name},
        "spec": {"hosts": [name], "http": routes_of(name)},
    })
    return name


def live_http(api: KubeJson, name: str) -> list[dict[str, Any]]:
    http: list[dict[str, Any]] = api.get(vs_path(name))["spec"]["http"]
    return http


@pytest.mark.parametrize(("route", "index"), [(None, 1), ("fallback", 2)], ids=["default-route", "named-route"])
def test_a_step_and_a_release_edit_the_same_route(
    clients: ActivityClients, api: KubeJson, multi_route_service: str, route: str | None, index: int
) -> None:
    """One traffic router, one route: `istio.set_weights` and a release (`delivery.snapshot`, `delivery.set_routes`
    with `desired_http`, `delivery.restore`) edit the same HTTP route of a VirtualService with a header-match
    route first and then two routes without `match`, and leave the others as they were. Default: both change
    `primary`, the first route without match (`fallback` is never reached by traffic; releases used to change
    it); named: both change the route named in the step and in the release."""
    service = multi_route_service
    istio, release, env = IstioActivities(clients), ReleaseClusterActivities(clients), Recorder()
    original = routes_of(service)
    untouched = [i for i in range(len(original)) if i != index]

    # the step path: istio.set_weights through the router
    step = env.run(istio.set_weights, call(SetWeightsArgs(region=REGION, namespace=NAMESPACE, name=service, route=route,
                                                          weights={"stable": 80, "canary": 20})))
    assert step.changed and step.previous == {"stable": 100}
    after_step = live_http(api, service)
    assert route_weights(after_step[index]) == {"stable": 80, "canary": 20}
    assert [after_step[i] for i in untouched] == [original[i] for i in untouched]

    # the release path: its snapshot reads the route the step wrote ...
    target = ReleaseTarget(service=service, namespace=NAMESPACE, region=REGION, route=route)
    snapshot = env.run(release.snapshot, TargetInput(target=target))
    assert snapshot.weights == {"stable": 80, "canary": 20}
    assert snapshot.http == after_step

    # ... and delivery.set_routes writes the same route (and nothing else but its own header route)
    desired = desired_http(snapshot.http, target, RouteState(canary_weight=40, mirror_percent=10))
    result = env.run(release.set_routes, RoutesInput(target=target, http=desired))
    assert result.changed and result.weights == {"stable": 60, "canary": 40}
    after_release = live_http(api, service)
    assert after_release == desired
    assert route_weights(after_release[index]) == {"stable": 60, "canary": 40}
    assert after_release[index]["mirror"] == {"host": f"{service}.{NAMESPACE}.svc.cluster.local", "subset": "canary"}
    assert [after_release[i] for i in untouched] == [original[i] for i in untouched]
    if route is None:
        assert after_release[index]["timeout"] == "5s"
        assert after_release[index]["route"][0]["destination"]["port"] == {"number": 8080}

    # the step reads what the release wrote; the same desired routes again are a no-op
    routes = env.run(istio.get_routes, call(RouteArgs(region=REGION, namespace=NAMESPACE, name=service, route=route)))
    assert routes.weights == {"stable": 60, "canary": 40}
    assert env.run(release.set_routes, RoutesInput(target=target, http=desired)).changed is False

    # a rollback writes the snapshot back through the same router
    restored = env.run(release.restore, RestoreInput(target=target, snapshot=snapshot))
    assert restored.routes_changed and restored.weights == {"stable": 80, "canary": 20}
    assert live_http(api, service) == after_step
