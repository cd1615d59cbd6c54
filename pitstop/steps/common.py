"""Argument pieces shared by several step types: validated Kubernetes names and object references."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

from pitstop.runbook.step_types import StepArgs

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _label(value: str) -> str:
    if len(value) > 63 or not _DNS1123_LABEL.match(value):
        raise ValueError(f"{value!r} is not a valid Kubernetes name (lowercase letters, digits and '-', at most 63)")
    return value


def _subdomain(value: str) -> str:
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
        raise ValueError(f"{value!r} is not a valid Kubernetes object name (lowercase letters, digits, '-' and '.')")
    return value


KubeLabelName = Annotated[str, AfterValidator(_label)]
KubeObjectName = Annotated[str, AfterValidator(_subdomain)]


class RegionalArgs(StepArgs):
    region: KubeLabelName = Field(description="region whose cluster the step acts on")


class NamespacedArgs(RegionalArgs):
    namespace: KubeLabelName = "default"
    name: KubeObjectName = Field(description="object name (the Deployment for workload steps)")
