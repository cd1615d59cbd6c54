"""Notification step types: a generic JSON webhook and a Slack-compatible `{"text": ...}` message.

Executed by `activities.notify`. Webhook URLs and tokens are secrets: reference them by env var name
(`url_env: SLACK_WEBHOOK_URL`, `token_env: SLACK_TOKEN`); they never enter workflow history.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from pitstop.runbook.step_types import (
    ENV_VAR_NAME, OUTBOUND_URL, StepArgs, StepResult, StepType, register_step_type,
)

from .http import HeaderArgs, check_env_names


class _Target(StepArgs):
    url: str | None = Field(None, pattern=r"^https?://", json_schema_extra=OUTBOUND_URL)
    url_env: str | None = Field(
        None, description="env var holding the URL (Slack webhook URLs are secrets)", json_schema_extra=ENV_VAR_NAME
    )
    token_env: str | None = Field(
        None, description="env var holding a bearer token, sent as Authorization", json_schema_extra=ENV_VAR_NAME
    )
    timeout_seconds: float = Field(15.0, gt=0, le=120)

    @model_validator(mode="after")
    def _one_url(self) -> _Target:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of `url` and `url_env`")
        check_env_names({k: v for k, v in {"url_env": self.url_env, "token_env": self.token_env}.items() if v})
        return self


class WebhookArgs(_Target, HeaderArgs):
    payload: dict[str, Any] = Field(description="JSON object to POST")


class SlackArgs(_Target):
    text: str = Field(min_length=1, max_length=40_000)
    channel: str | None = Field(None, description="channel override (chat.postMessage-style endpoints)")


class NotifyResult(StepResult):
    status: int | None = None
    target: str = Field("", description="masked URL or `$ENV_VAR`")


@register_step_type
class NotifyWebhook(StepType):
    name = "notify.webhook"
    description = "POST a JSON payload to a webhook."
    args_model = WebhookArgs
    result_model = NotifyResult
    activity = "notify.webhook"
    mutating = True
    default_timeout_seconds = 30.0


@register_step_type
class NotifySlack(StepType):
    name = "notify.slack"
    description = 'Post a Slack-compatible message (`{"text": ...}`).'
    args_model = SlackArgs
    result_model = NotifyResult
    activity = "notify.slack"
    mutating = True
    default_timeout_seconds = 30.0
