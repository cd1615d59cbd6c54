"""Istio fault injection for Chaos Toolkit experiments, a drop-in for chaostoolkit-istio 0.4.1's activities.

chaostoolkit-istio 0.4.1 fails against the current `kubernetes` client (`ApiClient.call_api()` no longer
takes `auth_settings`). `chaos.istio.fault.actions` and `chaos.istio.fault.probes` keep its function names,
arguments and return shape (`{"status", "body", "headers"}`), so an experiment runs with only its module
name changed (`chaosistio.fault.actions` -> `chaos.istio.fault.actions`). They talk to the API server
through pitstop's one JSON client (`activities.kube_api.KubeJson`) over an `ApiClient` configured exactly
as chaostoolkit-kubernetes configures its own (`chaosk8s.create_k8s_api_client`: `KUBECONFIG` and
`KUBERNETES_CONTEXT` from the environment or the experiment's secrets, in-pod config, or `KUBERNETES_HOST`).

`chaos discover chaos.istio` lists the activities.
"""

from __future__ import annotations

from chaoslib.discovery.discover import discover_actions, discover_probes, initialize_discovery_result
from chaoslib.types import Configuration, Discovery, Secrets
from chaosk8s import create_k8s_api_client

from activities.kube_api import KubeJson

__all__ = ["discover", "istio_client"]

FIELD_MANAGER = "pitstop-chaos"


def istio_client(configuration: Configuration | None = None, secrets: Secrets | None = None) -> KubeJson:
    """The JSON client of the experiment's cluster (chaostoolkit-kubernetes' client configuration)."""
    return KubeJson(create_k8s_api_client(secrets), field_manager=FIELD_MANAGER)


def discover(discover_system: bool = True) -> Discovery:
    """The Istio activities this package offers (for `chaos discover chaos.istio`)."""
    discovery = initialize_discovery_result("pitstop-chaos-istio", "0.4.1", "istio")
    discovery["activities"].extend(discover_actions("chaos.istio.fault.actions"))
    discovery["activities"].extend(discover_probes("chaos.istio.fault.probes"))
    return discovery
