"""docker-compose.yml cannot run here (no Docker engine); check its structure against the config model."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import jsonschema
import yaml

from pitstop.config import Settings
from tests.fixtures.compose_spec import compose_spec_schema

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _settings_env_names() -> set[str]:
    """Every PITSTOP_* env name the Settings model accepts (top-level and one level nested)."""
    names = set()
    for field_name, field in Settings.model_fields.items():
        names.add(f"PITSTOP_{field_name.upper()}")
        annotation = field.annotation
        if hasattr(annotation, "model_fields"):
            for sub in annotation.model_fields:
                names.add(f"PITSTOP_{field_name.upper()}__{sub.upper()}")
    return names


def test_the_file_is_valid_under_the_compose_specification() -> None:
    """The published JSON schema of the Compose specification (compose-go, what `docker compose` is built on)."""
    schema = compose_spec_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in validator.iter_errors(COMPOSE)]
    assert not errors, errors
    broken = copy.deepcopy(COMPOSE)
    broken["services"]["pitstop-worker"]["restart"] = ["always"]  # the validator does refuse what it should
    assert list(validator.iter_errors(broken))


def test_services_present() -> None:
    assert set(COMPOSE["services"]) == {"postgresql", "temporal", "temporal-ui", "pitstop-setup", "pitstop-worker",
                                        "pitstop-webhook"}


def test_ports_are_published_on_loopback_only() -> None:
    """The Web UI has no authentication in this file; nothing is published beyond the host's loopback."""
    published = {name: spec.get("ports", []) for name, spec in COMPOSE["services"].items()}
    assert published["temporal-ui"] == ["127.0.0.1:8233:8080"]
    assert "127.0.0.1:7233:7233" in published["temporal"]
    assert "127.0.0.1:8787:8787" in published["pitstop-webhook"]
    assert all(port.startswith("127.0.0.1:") for ports in published.values() for port in ports)


def test_start_order_is_health_gated_and_restarts_are_set() -> None:
    services = COMPOSE["services"]
    for name, spec in services.items():
        assert "restart" in spec, f"{name} has no restart policy"
        for dependency, condition in (spec.get("depends_on") or {}).items():
            assert condition["condition"] in ("service_healthy", "service_completed_successfully"), (name, dependency)
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}, which has no healthcheck"
    assert services["pitstop-setup"]["command"] == ["setup"] and services["pitstop-setup"]["restart"] == "no"
    for name in ("pitstop-worker", "pitstop-webhook"):
        assert services[name]["depends_on"] == {"pitstop-setup": {"condition": "service_completed_successfully"}}
        assert "healthcheck" in services[name]


def test_prometheus_and_alertmanager_are_external_and_metrics_are_scrapable() -> None:
    """Not defined here, so their URLs are required variables; the worker's metrics bind beyond its loopback."""
    env = COMPOSE["services"]["pitstop-worker"]["environment"]
    assert {"prometheus", "alertmanager"}.isdisjoint(COMPOSE["services"])
    assert ":?external -" in env["PITSTOP_PROMETHEUS__URL"] and ":?external -" in env["PITSTOP_ALERTMANAGER__URL"]
    assert env["PITSTOP_WORKER__METRICS_HOST"] == "0.0.0.0" and "9464" in COMPOSE["services"]["pitstop-worker"]["expose"]


@pytest.mark.parametrize("service", ["pitstop-setup", "pitstop-worker", "pitstop-webhook"])
def test_pitstop_env_names_match_the_config_model(service: str) -> None:
    env = COMPOSE["services"][service]["environment"]
    known = _settings_env_names()
    pitstop_vars = [name for name in env if name.startswith("PITSTOP_")]
    assert pitstop_vars, f"{service} sets no PITSTOP_* variable"
    unknown = [name for name in pitstop_vars if name not in known]
    assert not unknown, f"{service} sets env names the Settings model does not read: {unknown}"


def test_pitstop_services_build_the_dockerfile_and_use_cli_commands() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["pitstop"\]', dockerfile, re.M)
    for service, command in (("pitstop-setup", "setup"), ("pitstop-worker", "worker"), ("pitstop-webhook", "webhook")):
        spec = COMPOSE["services"][service]
        assert spec["build"] == "."
        assert spec["command"] == [command]


def test_webhook_token_is_required_not_defaulted() -> None:
    token = COMPOSE["services"]["pitstop-webhook"]["environment"]["PITSTOP_WEBHOOK__TOKEN"]
    assert ":?" in token  # compose refuses to start without a token


def test_worker_settings_parse_from_compose_env(monkeypatch: pytest.MonkeyPatch) -> None:
    env = COMPOSE["services"]["pitstop-worker"]["environment"]
    for name, value in env.items():
        resolved = re.sub(r"\$\{[A-Z_]+:-(.*)\}$", r"\1", str(value))
        resolved = re.sub(r"\$\{[A-Z_]+:\?.*\}$", "http://external.example:9090", resolved)
        monkeypatch.setenv(name, resolved)
    settings = Settings()
    assert settings.temporal.address == "temporal:7233"
    assert settings.kubernetes.regions["eu-central"].kubeconfig == Path("/etc/pitstop/kubeconfig")
    assert settings.worker.metrics_host == "0.0.0.0"
