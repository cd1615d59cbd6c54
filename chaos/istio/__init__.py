"""Istio fault injection for Chaos Toolkit experiments, a drop-in for chaostoolkit-istio 0.4.1's activities.

chaostoolkit-istio 0.4.1 fails against the current `kubernetes` client (`ApiClient.call_api()` no longer
takes `auth_settings`). `chaos.istio.fault.actions` and `chaos.istio.fault.probes` keep its function names,
arguments and return shape (`{"status", "body", "headers"}`), so an experiment runs with only its module
name changed (`chaosistio.fault.actions` -> `chaos.istio.fault.actions`). They talk to the API server
through pitstop's one JSON client (`activities.kube_api.KubeJson`) over an `ApiClient` configured as
chaostoolkit-kubernetes configures its own: the kubeconfig file named by `KUBECONFIG` (default
`~/.kube/config`) with the context `KUBERNETES_CONTEXT` (from the experiment's secrets, else the environment),
read when the action runs; without that file, `chaosk8s.create_k8s_api_client` itself (in-pod config when
`CHAOSTOOLKIT_IN_POD=true`, else `KUBERNETES_HOST` and friends).
"""

from __future__ import annotations

import os

from chaoslib.types import Configuration, Secrets
from chaosk8s import create_k8s_api_client, get_config_path
from kubernetes.client import ApiClient
from kubernetes.config import new_client_from_config

from pitstop.activities.kube_api import KubeJson

__all__ = ["api_client", "istio_client"]

FIELD_MANAGER = "pitstop-chaos"


def istio_client(configuration: Configuration | None = None, secrets: Secrets | None = None) -> KubeJson:
    """The JSON client of the experiment's cluster (chaostoolkit-kubernetes' client configuration)."""
    return KubeJson(api_client(secrets), field_manager=FIELD_MANAGER)


def api_client(secrets: Secrets | None = None) -> ApiClient:
    """chaosk8s reads `KUBECONFIG` through the kubernetes package's default location, fixed when that package is
    first imported; this reads it per call, and leaves the process-wide default configuration alone."""
    config_file = get_config_path()
    if os.path.exists(config_file):
        context = (secrets or {}).get("KUBERNETES_CONTEXT", os.environ.get("KUBERNETES_CONTEXT"))
        return new_client_from_config(config_file=config_file, context=context or None)
    return create_k8s_api_client(secrets)
