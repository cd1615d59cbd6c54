"""chaostoolkit-istio's fault actions, same names, arguments and return shape as chaostoolkit-istio 0.4.1.

`add_delay_fault` / `add_abort_fault` (through `set_fault`) set the `fault` block of every HTTP route of the
VirtualService whose destinations include one of `routes` (matched by `destination.host` and `subset`, as
the original does); `remove_delay_fault` / `remove_abort_fault` (through `unset_fault`) take it away again.

Rollback restores the route: the first `set_fault` on a route records the route's previous `fault` (usually
none) in the VirtualService's annotation `chaos.pitstop.dev/previous-faults`, and `unset_fault` puts that
back and drops the record, so add-then-remove leaves the VirtualService's spec and annotations exactly as they
were (the original simply deletes `fault`, which loses a fault the route had before the experiment). Without a
record `unset_fault` deletes `fault`, as the original does. Like the original, both remove actions remove the
whole fault block of the matched routes.

Writes replace the object read (PUT, the `update` verb pitstop's role already has on VirtualServices) with
its `resourceVersion`, re-read and retried on 409 Conflict, so a concurrent change to the VirtualService is
never overwritten (the original sent a merge patch of the whole `spec.http` without a precondition). Unlike the original, a failed write raises
`ActivityFailed` naming the VirtualService (the original returned the error answer, which `chaos run` does
not treat as a failure); a missing VirtualService raises, as in the original.
"""

from __future__ import annotations

import json
from copy import deepcopy
from typing import Any

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets
from kubernetes.client.exceptions import ApiException

from pitstop.activities.kube_errors import api_error_detail, retry_on_conflict
from pitstop.chaos_toolkit.istio import istio_client
from pitstop.chaos_toolkit.istio.fault.probes import DEFAULT_VERSION, virtual_service_path

__all__ = [
    "set_fault",
    "add_delay_fault",
    "add_abort_fault",
    "unset_fault",
    "remove_delay_fault",
    "remove_abort_fault",
]

PREVIOUS_FAULTS_ANNOTATION = "chaos.pitstop.dev/previous-faults"


def _targets(routes: list[dict[str, Any]]) -> set[tuple[str, str | None]]:
    out = set()
    for route in routes or []:
        if "destination" in route:
            destination = route["destination"]
            out.add((destination["host"], destination.get("subset")))
    return out


def _matches(http_route: dict[str, Any], targets: set[tuple[str, str | None]]) -> bool:
    return any((d["destination"]["host"], d["destination"].get("subset")) in targets
               for d in http_route.get("route") or [] if "destination" in d)


def _route_key(index: int, http_route: dict[str, Any]) -> str:
    return f"name:{http_route['name']}" if http_route.get("name") else f"index:{index}"


def _with_fault(vs: dict[str, Any], targets: set[tuple[str, str | None]], fault: dict[str, Any] | None
                ) -> dict[str, Any]:
    """A copy of `vs` with `fault` set on the matched routes (None: the recorded fault restored, or none)."""
    out = deepcopy(vs)
    meta = out.setdefault("metadata", {})
    annotations = meta.get("annotations") or {}
    try:
        previous: dict[str, Any] = json.loads(annotations.get(PREVIOUS_FAULTS_ANNOTATION) or "{}")
    except ValueError:
        previous = {}
    for index, route in enumerate((out.get("spec") or {}).get("http") or []):
        if not _matches(route, targets):
            continue
        key = _route_key(index, route)
        if fault is not None:
            previous.setdefault(key, route.get("fault"))
            route["fault"] = deepcopy(fault)
        elif previous.get(key) is not None:
            route["fault"] = previous.pop(key)
        else:
            previous.pop(key, None)
            route.pop("fault", None)
    if previous:
        annotations[PREVIOUS_FAULTS_ANNOTATION] = json.dumps(previous, sort_keys=True)
    else:
        annotations.pop(PREVIOUS_FAULTS_ANNOTATION, None)
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return out


def _write(virtual_service_name: str, routes: list[dict[str, Any]], fault: dict[str, Any] | None, *, ns: str,
           version: str, configuration: Configuration | None, secrets: Secrets | None) -> dict[str, Any]:
    client = istio_client(configuration, secrets)
    path = virtual_service_path(virtual_service_name, ns, version)
    targets = _targets(routes)

    def attempt() -> dict[str, Any]:
        vs = client.get_optional(path)
        if vs is None:
            raise ActivityFailed(f"Virtual Service '{virtual_service_name}' does not exist in namespace {ns!r}")
        return client.put(path, _with_fault(vs, targets, fault))

    try:
        body = retry_on_conflict(attempt)
    except ApiException as exc:
        raise ActivityFailed(f"cannot update VirtualService {ns}/{virtual_service_name} ({version}): "
                             f"HTTP {exc.status}: {api_error_detail(exc)}") from exc
    finally:
        client.api_client.close()
    return {"status": 200, "body": body, "headers": {}}


def set_fault(
    virtual_service_name: str,
    routes: list[dict[str, Any]],
    fault: dict[str, Any],
    ns: str = "default",
    version: str = DEFAULT_VERSION,
    configuration: Configuration | None = None,
    secrets: Secrets | None = None,
) -> dict[str, Any]:
    """Set `fault` (an Istio HTTPFaultInjection object) on the routes of the virtual service that send to
    one of `routes`' destinations; an existing fault there is replaced (and remembered for `unset_fault`)."""
    return _write(virtual_service_name, routes, fault, ns=ns, version=version, configuration=configuration,
                  secrets=secrets)


def unset_fault(
    virtual_service_name: str,
    routes: list[dict[str, Any]],
    ns: str = "default",
    version: str = DEFAULT_VERSION,
    configuration: Configuration | None = None,
    secrets: Secrets | None = None,
) -> dict[str, Any]:
    """Remove the fault from the matched routes, restoring the fault they had before `set_fault` if any."""
    return _write(virtual_service_name, routes, None, ns=ns, version=version, configuration=configuration,
                  secrets=secrets)


def add_delay_fault(
    virtual_service_name: str,
    fixed_delay: str,
    routes: list[dict[str, Any]],
    percentage: float | None = None,
    ns: str = "default",
    version: str = DEFAULT_VERSION,
    configuration: Configuration | None = None,
    secrets: Secrets | None = None,
) -> dict[str, Any]:
    """Delay `percentage` % of the matched routes' requests by `fixed_delay` (e.g. "2s"). As in Istio, no
    percentage delays nothing."""
    delay: dict[str, Any] = {"fixedDelay": fixed_delay}
    if percentage is not None:
        delay["percentage"] = {"value": percentage}
    return set_fault(virtual_service_name, fault={"delay": delay}, ns=ns, configuration=configuration,
                     secrets=secrets, routes=routes, version=version)


def add_abort_fault(
    virtual_service_name: str,
    http_status: int,
    routes: list[dict[str, Any]],
    percentage: float | None = None,
    ns: str = "default",
    version: str = DEFAULT_VERSION,
    configuration: Configuration | None = None,
    secrets: Secrets | None = None,
) -> dict[str, Any]:
    """Answer `percentage` % of the matched routes' requests with `http_status` before they reach the
    upstream. As in Istio, no percentage aborts nothing."""
    abort: dict[str, Any] = {"httpStatus": http_status}
    if percentage is not None:
        abort["percentage"] = {"value": percentage}
    return set_fault(virtual_service_name, fault={"abort": abort}, ns=ns, configuration=configuration,
                     secrets=secrets, routes=routes, version=version)


def remove_delay_fault(
    virtual_service_name: str,
    routes: list[dict[str, Any]],
    ns: str = "default",
    version: str = DEFAULT_VERSION,
    configuration: Configuration | None = None,
    secrets: Secrets | None = None,
) -> dict[str, Any]:
    """Remove the delay (the matched routes' whole fault block, as the original does)."""
    return unset_fault(virtual_service_name, ns=ns, configuration=configuration, secrets=secrets, routes=routes,
                       version=version)


def remove_abort_fault(
    virtual_service_name: str,
    routes: list[dict[str, Any]],
    ns: str = "default",
    version: str = DEFAULT_VERSION,
    configuration: Configuration | None = None,
    secrets: Secrets | None = None,
) -> dict[str, Any]:
    """Remove the abort (the matched routes' whole fault block, as the original does)."""
    return unset_fault(virtual_service_name, ns=ns, configuration=configuration, secrets=secrets, routes=routes,
                       version=version)
