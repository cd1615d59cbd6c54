"""docker-compose.yml cannot run here (no Docker engine); check its structure against the config model, and that it
mirrors the tested native topology (`sandbox.production_topology`, `sandbox.temporal_server`)."""

from __future__ import annotations

import copy
import dataclasses
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import jsonschema
import yaml

from pitstop.config import Settings
from pitstop.sandbox.production_topology import NAMESPACE, ROLES, PitstopProcess, ProductionTopology, Role, pitstop_processes
from pitstop.sandbox.temporal_binaries import TEMPORAL_SERVER_VERSION
from pitstop.sandbox.temporal_server import NAMESPACE_RETENTION, POSTGRES_MAJOR, SQL_PLUGIN, schema_commands
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
    assert set(COMPOSE["services"]) == {"postgresql", "temporal-schema", "temporal", "temporal-namespace", "temporal-ui",
                                        "pitstop-setup", "pitstop-worker", "pitstop-webhook"}


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


# ---------------------------------------------------------------- compose and the native topology agree

Native = dict[str, list[PitstopProcess]]


def native_topology(roles: Sequence[Role] = ROLES) -> Native:
    """The native topology's pitstop processes as it would start them (nothing is started)."""
    processes = pitstop_processes(root=Path("/nonexistent/topology"), temporal_address="127.0.0.1:7233",
                                  task_queue="pitstop", workers=2, webhooks=2, webhook_token="token")
    by_service = {role.service: role for role in roles}
    return {service: [dataclasses.replace(p, role=by_service[service]) for p in found] for service, found in processes.items()}


def _port(address: str) -> str:
    return str(address).rpartition(":")[2]


def _health_url(spec: dict[str, Any]) -> str:
    test = spec.get("healthcheck", {}).get("test", [])
    found = re.search(r"https?://[^'\" ]+", " ".join(test))
    return found.group(0) if found else ""


def role_disagreements(compose: dict[str, Any], roles: Sequence[Role], native: Native) -> list[str]:
    """Where a pitstop service of the compose file differs from the native topology's role and processes: command,
    settings (names, and values of the role's fixed ones), health gate and start order."""
    services = compose["services"]
    problems = []
    if {s for s in services if s.startswith("pitstop-")} != {r.service for r in roles}:
        problems.append(f"pitstop services {sorted(s for s in services if s.startswith('pitstop-'))} != roles")
    for index, role in enumerate(roles):
        spec, processes = services.get(role.service, {}), native[role.service]
        env = {name: str(value) for name, value in (spec.get("environment") or {}).items()}
        if spec.get("command") != list(role.command) or any(p.args != list(role.command) for p in processes):
            problems.append(f"{role.service}: command {spec.get('command')} / native {[p.args for p in processes]}")
        if set(env) != set(role.settings) | set(role.placed):
            problems.append(f"{role.service}: compose sets {sorted(env)}, the role {sorted({*role.settings, *role.placed})}")
        for process in processes:
            native_env = {k: v for k, v in process.env.items() if k.startswith("PITSTOP_") and k != "PITSTOP_CONFIG"}
            if not set(native_env) <= set(role.settings) | set(role.placed):
                problems.append(f"{process.name}: native sets {sorted(set(native_env) - {*role.settings, *role.placed})}")
            for name, value in role.settings.items():
                if env.get(name) != value or native_env.get(name) != value:
                    problems.append(f"{role.service}: {name} compose {env.get(name)!r}, native {native_env.get(name)!r}, role {value!r}")
        if role.one_shot:
            if spec.get("restart") != "no" or "healthcheck" in spec or any(p.ready_url for p in processes):
                problems.append(f"{role.service}: a one-shot job in both (restart 'no', no health gate)")
        else:
            compose_url = f"http://127.0.0.1:{_port(env.get(str(role.health_port), ''))}{role.health_path}"
            if _health_url(spec) != compose_url:
                problems.append(f"{role.service}: healthcheck {_health_url(spec)!r}, its settings say {compose_url!r}")
            for process in processes:
                native_url = f"http://127.0.0.1:{_port(process.env[str(role.health_port)])}{role.health_path}"
                if process.ready_url != native_url:
                    problems.append(f"{process.name}: native start gate {process.ready_url!r}, expected {native_url!r}")
        completed = {name: {"condition": "service_completed_successfully"} for name in role.after}
        if role.after and spec.get("depends_on") != completed:
            problems.append(f"{role.service}: depends_on {spec.get('depends_on')}, the role waits for {completed}")
        started_before = {r.service for r in roles[:index]}
        if not set(role.after) <= started_before:
            problems.append(f"{role.service}: native starts it before {sorted(set(role.after) - started_before)}")
    return problems


def test_pitstop_services_agree_with_the_native_topology() -> None:
    """Same command, settings, health gate and start order as `sandbox.production_topology` runs (and tests)."""
    assert role_disagreements(COMPOSE, ROLES, native_topology()) == []


def _changed(path: Sequence[str], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(COMPOSE)
    node = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return changed


@pytest.mark.parametrize("path, value", [
    (("services", "pitstop-worker", "command"), ["worker", "--debug"]),
    (("services", "pitstop-webhook", "environment", "PITSTOP_TEMPORAL__NAMESPACE"), "pitstop"),
    (("services", "pitstop-worker", "environment", "PITSTOP_WORKER__MAX_CONCURRENT_ACTIVITIES"), "10"),
    (("services", "pitstop-worker", "environment", "PITSTOP_WORKER__METRICS_PORT"), "9465"),
    (("services", "pitstop-webhook", "healthcheck", "test"), ["CMD", "true"]),
    (("services", "pitstop-webhook", "depends_on"), {"temporal": {"condition": "service_healthy"}}),
    (("services", "pitstop-setup", "restart"), "on-failure"),
])
def test_a_compose_change_the_native_topology_lacks_is_caught(path: Sequence[str], value: Any) -> None:
    assert role_disagreements(_changed(path, value), ROLES, native_topology())


def test_a_native_change_compose_lacks_is_caught() -> None:
    setup, worker, webhook = ROLES
    for roles in (
        (setup, dataclasses.replace(worker, command=("worker", "--region", "eu-central")), webhook),
        (setup, worker, dataclasses.replace(webhook, settings={**webhook.settings, "PITSTOP_WEBHOOK__MAX_BODY_BYTES": "1024"})),
        (setup, dataclasses.replace(worker, health_path="/healthz"), webhook),
        (worker, setup, webhook),  # the worker started before the setup job it waits for
    ):
        assert role_disagreements(COMPOSE, roles, native_topology(roles)), roles


def _job_commands(service: str) -> list[list[str]]:
    """The shell commands of a `sh -c` job, one argument list per command (`set -e` left out)."""
    [script] = COMPOSE["services"][service]["command"]
    return [shlex.split(part) for part in script.split(";") if part.strip() and part.strip() != "set -e"]


def test_workers_are_replicated_as_in_the_native_topology() -> None:
    workers = next(f.default for f in dataclasses.fields(ProductionTopology) if f.name == "workers")
    assert COMPOSE["services"]["pitstop-worker"]["deploy"]["replicas"] == workers


def test_the_temporal_side_agrees_with_the_native_topology() -> None:
    """The server version built from Go modules, PostgreSQL's major version, the schema tool's commands (against the
    schemas the admin-tools image ships for that version), the persistence plugin, the namespace and its retention."""
    services, version = COMPOSE["services"], TEMPORAL_SERVER_VERSION.removeprefix("v")
    assert services["temporal"]["image"] == f"temporalio/server:{version}"
    assert {services[job]["image"] for job in ("temporal-schema", "temporal-namespace")} == {f"temporalio/admin-tools:{version}"}
    assert services["postgresql"]["image"] == f"postgres:{POSTGRES_MAJOR}"
    assert services["temporal"]["environment"]["DB"] == SQL_PLUGIN
    assert _job_commands("temporal-schema") == schema_commands(
        tool="temporal-sql-tool", host="postgresql", port=5432, schema_dir="/etc/temporal/schema/postgresql/v12")
    hours = int(NAMESPACE_RETENTION.total_seconds() // 3600)
    [script] = services["temporal-namespace"]["command"]
    assert f"temporal operator namespace create -n {NAMESPACE} --retention {hours}h" in script
    assert services["pitstop-setup"]["depends_on"] == {"temporal-namespace": {"condition": "service_completed_successfully"}}
    assert services["temporal-namespace"]["depends_on"] == {"temporal": {"condition": "service_healthy"}}
    assert services["temporal"]["depends_on"] == {"temporal-schema": {"condition": "service_completed_successfully"}}
