"""Kubernetes and Istio value types shared by step arguments and release specs: validated names, header matches."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _label(value: str) -> str:
    if len(value) > 63 or not _DNS1123_LABEL.match(value):
        raise ValueError(f"{value!r} is not a valid Kubernetes name (lowercase letters, digits and '-', at most 63)")
    return value


def _label_or_empty(value: str) -> str:
    return _label(value) if value else value


def _subdomain(value: str) -> str:
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
        raise ValueError(f"{value!r} is not a valid Kubernetes object name (lowercase letters, digits, '-' and '.')")
    return value


KubeLabelName = Annotated[str, AfterValidator(_label)]
"""A DNS-1123 label: namespaces, regions, container and subset names."""
KubeLabelNameOrEmpty = Annotated[str, AfterValidator(_label_or_empty)]
"""A DNS-1123 label, or empty for 'not given'."""
KubeObjectName = Annotated[str, AfterValidator(_subdomain)]
"""A DNS-1123 subdomain: Deployment, Service, VirtualService names."""


class HeaderMatch(BaseModel):
    """Istio StringMatch: exactly one of exact / prefix / regex."""

    model_config = ConfigDict(extra="forbid")
    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _one(self) -> HeaderMatch:
        if sum(v is not None for v in (self.exact, self.prefix, self.regex)) != 1:
            raise ValueError("a header match needs exactly one of `exact`, `prefix`, `regex`")
        return self

    def as_istio(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v is not None}
