"""pitstop's own alert rules, dashboard and scrape configuration (docs/observability.md); the end-to-end check
(series scraped, dashboard queries answered, traces, the worker-down alert) is
tests/sandbox/test_pitstop_observability.py."""

from __future__ import annotations

import json
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Iterator

import pytest
import yaml

from pitstop.activities.call_observer import ApiCall, chained
from pitstop.config import Settings
from pitstop.sandbox.monitoring import PITSTOP_RULES, MonitoringSettings, render_pitstop_rules, render_prometheus_config
from pitstop.workers.metrics import BUCKETS, bind_address, scrape_targets

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "pitstop.json"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool missing: apt-get install -y --no-install-recommends prometheus", pytrace=False)
    return found


@pytest.mark.parametrize("rules_for", [None, "2s"])
def test_pitstop_alert_rules_pass_promtool(tmp_path: Path, rules_for: str | None) -> None:
    """The shipped file and the sandbox's copy with every `for:` shortened (what the sandbox test loads)."""
    path = tmp_path / "pitstop-alerts.yml"
    path.write_text(render_pitstop_rules(rules_for))
    result = subprocess.run([_promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout, result.stdout
    rules = [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} >= {"PitstopWorkerDown", "PitstopJournalBacklogGrowing", "PitstopRunsStuck"}
    assert {r["for"] for r in rules} == ({"2s"} if rules_for else {"2m", "5m", "10m", "30m"})


def test_every_dashboard_panel_queries_prometheus_with_a_known_series() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) == sum(len(p["targets"]) for p in dashboard["panels"]) >= 10
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for series in ("pitstop_runbook_runs_started_total", "pitstop_runbook_runs_finished_total",
                   "pitstop_step_duration_seconds_bucket", "pitstop_lease_wait_seconds_bucket",
                   "pitstop_kubernetes_requests_total", "pitstop_webhook_request_duration_seconds_bucket",
                   "pitstop_webhook_journal_backlog"):
        assert any(series in e for e in exprs), series
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"])


def test_the_sandbox_prometheus_scrapes_pitstop_and_loads_its_rules(tmp_path: Path) -> None:
    settings = MonitoringSettings(simulator_target="127.0.0.1:9", regions=["eu-central"],
                                  pitstop_targets={"pitstop-worker": ["127.0.0.1:9464"],
                                                   "pitstop-webhook": ["127.0.0.1:9465"]})
    config = render_prometheus_config(settings=settings, rules_path=tmp_path / "a.yml", alertmanager_port=9093,
                                      pitstop_rules_path=tmp_path / "pitstop-alerts.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["pitstop-worker"]["static_configs"] == [{"targets": ["127.0.0.1:9464"]}]
    assert jobs["pitstop-webhook"]["static_configs"] == [{"targets": ["127.0.0.1:9465"]}]
    assert config["rule_files"] == [str(tmp_path / "a.yml"), str(tmp_path / "pitstop-alerts.yml")]
    assert PITSTOP_RULES.is_file()


def test_scrape_targets_follow_the_configured_bind_addresses() -> None:
    assert scrape_targets(Settings()) == {"pitstop-worker": ["127.0.0.1:9464"], "pitstop-webhook": ["127.0.0.1:9465"]}
    container = Settings(worker={"metrics_host": "0.0.0.0", "metrics_port": 9500}, webhook={"metrics_listen": "0.0.0.0:9501"})
    assert scrape_targets(container) == {"pitstop-worker": ["127.0.0.1:9500"], "pitstop-webhook": ["127.0.0.1:9501"]}
    assert scrape_targets(Settings(worker={"metrics_port": 0}, webhook={"metrics_listen": ""})) == {}
    assert bind_address("127.0.0.1", 0) is None and bind_address("::1", 9) == "[::1]:9"


def test_histogram_buckets_are_increasing() -> None:
    for name, buckets in BUCKETS.items():
        assert list(buckets) == sorted(set(buckets)), name


def test_chained_observers_enter_in_order_and_see_the_status() -> None:
    seen: list[str] = []

    def recorder(tag: str):  # type: ignore[no-untyped-def]
        @contextmanager
        def observe(call: ApiCall) -> Iterator[ApiCall]:
            seen.append(f"enter {tag}")
            yield call
            seen.append(f"exit {tag} {call.status}")
        return observe

    assert chained(None, None) is None
    single = recorder("only")
    assert chained(None, single) is single
    observer = chained(recorder("a"), None, recorder("b"))
    assert observer is not None
    call = ApiCall("kubernetes", "GET", "/api/v1/namespaces")
    with observer(call):
        call.status = 404
    assert seen == ["enter a", "enter b", "exit b 404", "exit a 404"]
