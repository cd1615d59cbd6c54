"""Argument validation of the step library: bad `with:` values fail before any workflow starts."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

import pitstop.steps  # noqa: F401  (registers the step types)
from pitstop.runbook.step_types import STEP_TYPES
from pitstop.steps.http import HttpCallArgs
from pitstop.steps.istio import HeaderMatch, SetHeaderRouteArgs, SetWeightsArgs
from pitstop.steps.kubernetes import PatchArgs, ScaleArgs, SetImageArgs
from pitstop.steps.notify import SlackArgs, WebhookArgs
from pitstop.steps.prometheus import ThresholdArgs, WaitForConditionArgs


def test_every_step_type_is_registered_with_an_activity_and_models() -> None:
    names = {n for n in STEP_TYPES if n.split(".")[0] in {"kubernetes", "istio", "prometheus", "http", "notify", "graph"}}
    assert {"kubernetes.scale", "kubernetes.drain", "istio.set_weights", "prometheus.check_threshold", "http.call", "notify.slack"} <= names
    for name in names:
        step = STEP_TYPES[name]
        assert step.activity == name
        assert step.args_model.model_config.get("extra") == "forbid"
        if step.regional:
            assert "region" in step.args_model.model_fields
        if step.heartbeat_seconds:
            assert step.default_timeout_seconds > 3300  # room for the longest `timeout_seconds` allowed


def test_kubernetes_names_and_replicas_are_checked() -> None:
    ScaleArgs(region="eu-central", namespace="team-ota", name="ota-api", replicas=3)
    with pytest.raises(ValidationError, match="not a valid Kubernetes"):
        ScaleArgs(region="eu-central", namespace="Team_OTA", name="ota-api", replicas=3)
    with pytest.raises(ValidationError):
        ScaleArgs(region="eu-central", name="ota-api", replicas=-1)
    with pytest.raises(ValidationError, match="Extra inputs"):
        ScaleArgs(region="eu-central", name="ota-api", replicas=1, replica=2)
    with pytest.raises(ValidationError):
        SetImageArgs(region="eu-central", name="ota-api", container="app", image="has space")


def test_patch_only_allowed_kinds() -> None:
    PatchArgs(region="r", name="x", kind="StatefulSet", patch={"spec": {"replicas": 1}})
    with pytest.raises(ValidationError):
        PatchArgs(region="r", name="x", kind="Secret", patch={"data": {}})


def test_weights_must_sum_to_100() -> None:
    SetWeightsArgs(region="r", name="vs", weights={"stable": 90, "canary": 10})
    with pytest.raises(ValidationError, match="sum to 100"):
        SetWeightsArgs(region="r", name="vs", weights={"stable": 90, "canary": 20})
    with pytest.raises(ValidationError, match="between 0 and 100"):
        SetWeightsArgs(region="r", name="vs", weights={"stable": 110, "canary": -10})


def test_header_match_needs_exactly_one_kind() -> None:
    SetHeaderRouteArgs(region="r", name="vs", subset="canary", headers={"x-user": HeaderMatch(exact="beta")})
    with pytest.raises(ValidationError, match="exactly one"):
        HeaderMatch(exact="a", prefix="b")


def test_thresholds_need_a_bound() -> None:
    ThresholdArgs(query="up", min=1)
    with pytest.raises(ValidationError, match="needs `min`, `max`"):
        ThresholdArgs(query="up")
    with pytest.raises(ValidationError):
        WaitForConditionArgs(query="up", max=1, timeout_seconds=0)


def test_credentials_cannot_be_inlined_in_http_steps() -> None:
    with pytest.raises(ValidationError, match="look like credentials"):
        HttpCallArgs(url="https://api.example.com/x", headers={"Authorization": "Bearer abc"})
    with pytest.raises(ValidationError, match="look like credentials"):
        HttpCallArgs(url="https://api.example.com/x", headers={"X-Whatever": "xoxb-123456789012-abcdefghijkl"})
    with pytest.raises(ValidationError, match="not environment variable names"):
        HttpCallArgs(url="https://api.example.com/x", header_env={"Authorization": "Bearer abc"})
    with pytest.raises(ValidationError, match="exactly one of `url` and `url_env`"):
        HttpCallArgs()
    ok = HttpCallArgs(url="https://api.example.com/x", headers={"Accept": "application/json"}, header_env={"Authorization": "API_TOKEN"})
    assert ok.header_env == {"Authorization": "API_TOKEN"}


def test_notify_targets() -> None:
    SlackArgs(url_env="SLACK_WEBHOOK_URL", token_env="SLACK_TOKEN", text="hi")
    with pytest.raises(ValidationError, match="exactly one"):
        SlackArgs(url="https://hooks.example.com/x", url_env="X", text="hi")
    with pytest.raises(ValidationError):
        WebhookArgs(url="https://hooks.example.com/x", payload={}, headers={"Cookie": "session=1"})
