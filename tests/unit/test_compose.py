"""docker-compose.yml cannot run here (no Docker engine); check its structure against the config model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pitstop.config import Settings

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


def test_services_present() -> None:
    assert set(COMPOSE["services"]) == {"postgresql", "temporal", "temporal-ui", "pitstop-worker", "pitstop-webhook"}


def test_ports_published() -> None:
    services = COMPOSE["services"]
    assert "7233:7233" in services["temporal"]["ports"]
    assert "8233:8080" in services["temporal-ui"]["ports"]
    assert "8787:8787" in services["pitstop-webhook"]["ports"]


@pytest.mark.parametrize("service", ["pitstop-worker", "pitstop-webhook"])
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
    for service, command in (("pitstop-worker", "worker"), ("pitstop-webhook", "webhook")):
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
        monkeypatch.setenv(name, resolved)
    settings = Settings()
    assert settings.temporal.address == "temporal:7233"
    assert settings.kubernetes.regions["eu-central"].kubeconfig == Path("/etc/pitstop/kubeconfig")
