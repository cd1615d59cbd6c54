"""Prometheus and Alertmanager for the sandbox, as our own child processes.

`start_monitoring(settings=..., state_dir=...)` renders `prometheus.yml`, the alert rules
(`sandbox/monitoring/alert-rules.yml.tmpl`) and `alertmanager.yml` into `state_dir`, optionally backfills
history into the TSDB (`sandbox.history`), starts both binaries from the Debian packages on free
127.0.0.1 ports and waits until they are ready. It returns a `MonitoringHandle` (urls, pids, `stop()`).

Prometheus scrapes the simulator once per region (`/metrics?region=<region>`, job `sandbox-<region>`) and
itself (job `prometheus`, as real setups do);
Alertmanager routes every alert to pitstop's webhook with a bearer token. With `pitstop_targets` it also scrapes
pitstop's own worker and webhook (jobs `pitstop-worker`, `pitstop-webhook`) and loads pitstop's alert rules
(`deploy/prometheus/pitstop-alerts.yml`; docs/observability.md).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import string
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

RULES_TEMPLATE = Path(__file__).with_name("monitoring") / "alert-rules.yml.tmpl"
PITSTOP_RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "pitstop-alerts.yml"


class MonitoringError(RuntimeError):
    """Prometheus or Alertmanager could not be started."""


class AlertRuleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    window: str = "5m"
    restart_window: str = "10m"
    for_duration: str = "2m"
    error_ratio_threshold: float = 0.05
    latency_slo_ms: int = 500
    latency_slo_burn_ratio: float = 0.05
    saturation_threshold: float = 0.9


class MonitoringSettings(BaseModel):
    """What to scrape, how often, and where alerts go."""

    model_config = ConfigDict(extra="forbid")
    simulator_target: str = Field(description="host:port of the simulator's /metrics")
    regions: list[str]
    scrape_interval: str = "15s"
    evaluation_interval: str = "15s"
    webhook_url: str | None = Field(default=None, description="pitstop's Alertmanager webhook")
    webhook_bearer_token: str | None = None
    group_wait: str = "30s"
    group_interval: str = "1m"
    repeat_interval: str = "4h"
    resolve_timeout: str = "5m"
    retention: str = "30d"
    rules: AlertRuleSettings = Field(default_factory=AlertRuleSettings)
    pitstop_targets: dict[str, list[str]] = Field(
        default_factory=dict, description="pitstop's own /metrics: job (pitstop-worker, pitstop-webhook) -> host:port")
    pitstop_rules_for: str | None = Field(
        default=None, description="replaces the `for:` of every rule in deploy/prometheus/pitstop-alerts.yml (tests)")
    prometheus_binary: str = "prometheus"
    alertmanager_binary: str = "prometheus-alertmanager"


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def render_alert_rules(rules: AlertRuleSettings) -> str:
    values = {k: str(v) for k, v in rules.model_dump().items()}
    return string.Template(RULES_TEMPLATE.read_text()).safe_substitute(values)


def render_pitstop_rules(rules_for: str | None) -> str:
    """pitstop's own alert rules (deploy/prometheus/pitstop-alerts.yml), every `for:` replaced when given."""
    if rules_for is None:
        return PITSTOP_RULES.read_text()
    rules = yaml.safe_load(PITSTOP_RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = rules_for
    return yaml.safe_dump(rules, sort_keys=False)


def render_prometheus_config(*, settings: MonitoringSettings, rules_path: Path, alertmanager_port: int,
                             pitstop_rules_path: Path | None = None,
                             prometheus_port: int | None = None) -> dict[str, Any]:
    """The scrape config: the simulator per region, pitstop's own targets and, given its port, Prometheus itself."""
    own = [{"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{prometheus_port}"]}]}
           ] if prometheus_port else []
    return {
        "global": {
            "scrape_interval": settings.scrape_interval,
            "evaluation_interval": settings.evaluation_interval,
            "scrape_timeout": settings.scrape_interval,
            "external_labels": {"sandbox": "pitstop"},
        },
        "rule_files": [str(rules_path)] + ([str(pitstop_rules_path)] if pitstop_rules_path else []),
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]},
        "scrape_configs": [
            {
                "job_name": f"sandbox-{region}",
                "metrics_path": "/metrics",
                "params": {"region": [region]},
                "honor_labels": True,
                "static_configs": [{"targets": [settings.simulator_target], "labels": {"region": region}}],
            }
            for region in settings.regions
        ] + [
            {"job_name": job, "metrics_path": "/metrics", "static_configs": [{"targets": targets}]}
            for job, targets in settings.pitstop_targets.items()
        ] + own,
    }


def render_alertmanager_config(settings: MonitoringSettings) -> dict[str, Any]:
    receiver: dict[str, Any] = {"name": "pitstop"}
    if settings.webhook_url:
        webhook: dict[str, Any] = {"url": settings.webhook_url, "send_resolved": True, "max_alerts": 0}
        if settings.webhook_bearer_token:
            webhook["http_config"] = {
                "authorization": {"type": "Bearer", "credentials": settings.webhook_bearer_token}
            }
        receiver["webhook_configs"] = [webhook]
    return {
        "global": {"resolve_timeout": settings.resolve_timeout},
        "route": {
            "receiver": "pitstop",
            "group_by": ["alertname", "region", "destination_service_name", "namespace", "pod"],
            "group_wait": settings.group_wait,
            "group_interval": settings.group_interval,
            "repeat_interval": settings.repeat_interval,
        },
        "receivers": [receiver],
        "inhibit_rules": [
            {
                "source_matchers": ["alertname = RegionDown"],
                "target_matchers": ["alertname =~ HighErrorRate|LatencySLOBurn"],
                "equal": ["region"],
            }
        ],
    }


class MonitoringHandle(BaseModel):
    """Running Prometheus + Alertmanager."""

    prometheus_url: str
    alertmanager_url: str
    prometheus_pid: int
    alertmanager_pid: int
    state_dir: Path
    tsdb_dir: Path
    settings: MonitoringSettings
    _processes: list[subprocess.Popen[bytes]] = PrivateAttr(default_factory=list)

    def stop(self, *, timeout_seconds: float = 10.0) -> None:
        """SIGTERM both processes (then SIGKILL after `timeout_seconds`)."""
        for process in self._processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self._processes:
            try:
                process.wait(timeout=timeout_seconds)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def reload_prometheus(self) -> None:
        httpx.post(f"{self.prometheus_url}/-/reload", timeout=10).raise_for_status()


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MonitoringError(
            f"{name} not found: apt-get install -y --no-install-recommends prometheus prometheus-alertmanager"
        )
    return path


def wait_http_ready(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout_seconds: float) -> None:
    """Until `url` answers 200; fails with the log's tail when the process exits or the time is up."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise MonitoringError(f"{url} exited with {process.returncode}; log {log_path}:\n"
                                  f"{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise MonitoringError(f"{url} not ready after {timeout_seconds}s; log {log_path}")


def start_monitoring(
    *,
    settings: MonitoringSettings,
    state_dir: Path,
    prometheus_port: int | None = None,
    alertmanager_port: int | None = None,
    ready_timeout_seconds: float = 60.0,
) -> MonitoringHandle:
    """Write configs into `state_dir` and start Alertmanager then Prometheus on 127.0.0.1.

    The TSDB lives in `state_dir/prometheus-data`; backfill history into it before calling this
    (`sandbox.history.backfill_history`).
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    prometheus_bin = _binary(settings.prometheus_binary)
    alertmanager_bin = _binary(settings.alertmanager_binary)
    prometheus_port = prometheus_port or free_loopback_port()
    alertmanager_port = alertmanager_port or free_loopback_port()
    tsdb_dir = state_dir / "prometheus-data"
    tsdb_dir.mkdir(exist_ok=True)
    (state_dir / "alertmanager-data").mkdir(exist_ok=True)
    rules_path = state_dir / "alert-rules.yml"
    rules_path.write_text(render_alert_rules(settings.rules))
    pitstop_rules_path = state_dir / "pitstop-alerts.yml" if PITSTOP_RULES.exists() else None  # no deploy/ in a wheel
    if pitstop_rules_path is not None:
        pitstop_rules_path.write_text(render_pitstop_rules(settings.pitstop_rules_for))
    prometheus_yml = state_dir / "prometheus.yml"
    prometheus_yml.write_text(yaml.safe_dump(render_prometheus_config(
        settings=settings, rules_path=rules_path, alertmanager_port=alertmanager_port,
        pitstop_rules_path=pitstop_rules_path, prometheus_port=prometheus_port), sort_keys=False))
    alertmanager_yml = state_dir / "alertmanager.yml"
    alertmanager_yml.write_text(yaml.safe_dump(render_alertmanager_config(settings), sort_keys=False))
    os.chmod(alertmanager_yml, 0o600)  # holds the webhook bearer token

    processes: list[subprocess.Popen[bytes]] = []
    try:
        am_log = state_dir / "alertmanager.log"
        alertmanager = subprocess.Popen(
            [alertmanager_bin, f"--config.file={alertmanager_yml}",
             f"--storage.path={state_dir / 'alertmanager-data'}",
             f"--web.listen-address=127.0.0.1:{alertmanager_port}", "--cluster.listen-address="],
            stdout=am_log.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        processes.append(alertmanager)
        prom_log = state_dir / "prometheus.log"
        prometheus = subprocess.Popen(
            [prometheus_bin, f"--config.file={prometheus_yml}", f"--storage.tsdb.path={tsdb_dir}",
             f"--storage.tsdb.retention.time={settings.retention}",
             f"--web.listen-address=127.0.0.1:{prometheus_port}", "--web.enable-lifecycle",
             "--web.enable-admin-api"],
            stdout=prom_log.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        processes.append(prometheus)
        wait_http_ready(f"http://127.0.0.1:{alertmanager_port}/-/ready", alertmanager, am_log, ready_timeout_seconds)
        wait_http_ready(f"http://127.0.0.1:{prometheus_port}/-/ready", prometheus, prom_log, ready_timeout_seconds)
    except BaseException:
        for process in processes:
            process.kill()
            process.wait()
        raise
    handle = MonitoringHandle(
        prometheus_url=f"http://127.0.0.1:{prometheus_port}",
        alertmanager_url=f"http://127.0.0.1:{alertmanager_port}",
        prometheus_pid=prometheus.pid,
        alertmanager_pid=alertmanager.pid,
        state_dir=state_dir,
        tsdb_dir=tsdb_dir,
        settings=settings,
    )
    handle._processes = processes
    return handle
