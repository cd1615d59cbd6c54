"""The GitOps alternative to the closed loop: recommendations as kustomize patch files (pure).

One strategic-merge patch per Deployment (`<namespace>--<name>.yaml`: apiVersion, kind, metadata name and
namespace, and `spec.template.spec.containers[].resources` of the containers that change, merged by container
name) plus a `kustomization.yaml` that lists them under `patches:` and the base(s) under `resources:`. Put the
directory in an overlay of your repository (e.g. `resources: [../../base]`) and let Flux/Argo CD apply it.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from pitstop.delivery.spec import ContainerResources

KUSTOMIZATION = "kustomization.yaml"


@dataclass(frozen=True)
class DeploymentPatch:
    namespace: str
    name: str
    containers: dict[str, ContainerResources]
    comment: str = ""

    @property
    def filename(self) -> str:
        return f"{self.namespace}--{self.name}.yaml"


def patch_document(patch: DeploymentPatch) -> dict[str, object]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": patch.name, "namespace": patch.namespace},
        "spec": {"template": {"spec": {"containers": [
            {"name": name, "resources": res.as_json()} for name, res in sorted(patch.containers.items())
        ]}}},
    }


def kustomize_files(patches: list[DeploymentPatch], *, resources: list[str]) -> dict[str, str]:
    """File name -> text: one patch per Deployment that changes, and the kustomization listing them."""
    files: dict[str, str] = {}
    for patch in sorted(patches, key=lambda p: p.filename):
        if not patch.containers:
            continue
        header = "".join(f"# {line}\n" for line in patch.comment.splitlines())
        files[patch.filename] = header + yaml.safe_dump(patch_document(patch), sort_keys=False)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(resources),
        "patches": [{"path": name} for name in files],
    }
    files[KUSTOMIZATION] = ("# rightsizing patches written by `pitstop capacity apply --patches`\n"
                            + yaml.safe_dump(kustomization, sort_keys=False))
    return files
