"""Argument pieces shared by several step types: validated Kubernetes names and object references."""

from __future__ import annotations

from pydantic import Field

from pitstop.kubernetes_names import KubeLabelName, KubeObjectName
from pitstop.runbook.step_types import StepArgs

__all__ = ["KubeLabelName", "KubeObjectName", "RegionalArgs", "NamespacedArgs"]


class RegionalArgs(StepArgs):
    region: KubeLabelName = Field(description="region whose cluster the step acts on")


class NamespacedArgs(RegionalArgs):
    namespace: KubeLabelName = "default"
    name: KubeObjectName = Field(description="object name (the Deployment for workload steps)")
