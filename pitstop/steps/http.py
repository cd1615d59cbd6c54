"""HTTP call step type: one request with an expected status. Secrets come from worker env vars by name.

Executed by `activities.http`. Credential-bearing headers may not be written inline (they would land in
workflow history): use `header_env: {Authorization: MY_TOKEN_ENV}` with the full header value in the env var.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from pitstop.redaction import is_sensitive_header_name, looks_like_credential
from pitstop.runbook.step_types import (
    ENV_VAR_NAME, OUTBOUND_URL, StepArgs, StepResult, StepType, register_step_type,
)

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_env_names(mapping: dict[str, str]) -> dict[str, str]:
    bad = [v for v in mapping.values() if not _ENV_NAME.match(v)]
    if bad:
        raise ValueError(f"not environment variable names: {bad} (reference secrets by name, never inline them)")
    return mapping


def check_inline_headers(headers: dict[str, str]) -> dict[str, str]:
    inline = [k for k, v in headers.items() if is_sensitive_header_name(k) or looks_like_credential(v)]
    if inline:
        raise ValueError(
            f"headers {inline} look like credentials; put the value in an environment variable of the worker "
            "and reference it with `header_env: {<header>: <ENV_VAR>}`"
        )
    return headers


class HeaderArgs(StepArgs):
    """Request headers: literal ones (never credentials) and ones whose value a worker env var holds."""

    headers: dict[str, str] = Field(default_factory=dict)
    header_env: dict[str, str] = Field(
        default_factory=dict, description="header -> env var holding its value", json_schema_extra=ENV_VAR_NAME
    )

    @field_validator("headers")
    @classmethod
    def _no_inline_credentials(cls, headers: dict[str, str]) -> dict[str, str]:
        return check_inline_headers(headers)

    @field_validator("header_env")
    @classmethod
    def _env_var_names(cls, header_env: dict[str, str]) -> dict[str, str]:
        return check_env_names(header_env)


class HttpCallArgs(HeaderArgs):
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str | None = Field(
        None, pattern=r"^https?://", description="target URL (no secrets in it)", json_schema_extra=OUTBOUND_URL
    )
    url_env: str | None = Field(
        None, description="env var holding the URL, when the URL itself is secret", json_schema_extra=ENV_VAR_NAME
    )
    body: Any = Field(None, description="JSON body")
    expected_status: list[int] = Field(default_factory=lambda: [200, 201, 202, 204])
    timeout_seconds: float = Field(30.0, gt=0, le=300)

    @model_validator(mode="after")
    def _one_url(self) -> HttpCallArgs:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of `url` and `url_env`")
        if self.url_env is not None:
            check_env_names({"url_env": self.url_env})
        return self


class HttpCallResult(StepResult):
    status: int | None = None
    ok: bool = False
    request: str = Field("", description="method and masked URL")
    request_headers: dict[str, str] = Field(default_factory=dict, description="masked")
    response_excerpt: str = Field("", description="first 1000 characters of the response body")


@register_step_type
class HttpCall(StepType):
    name = "http.call"
    description = "Send one HTTP request and check the response status."
    args_model = HttpCallArgs
    result_model = HttpCallResult
    activity = "http.call"
    mutating = True
    default_timeout_seconds = 60.0
