"""Setup against a Temporal without pitstop's search attributes (a real dev server started without them),
as a new user meets it: `pitstop worker` and `pitstop up --temporal` refuse at once naming the namespace,
the missing attributes and `pitstop setup`; the webhook starts anyway, journals an alert and forwards
nothing; `pitstop setup` registers them, a second `pitstop setup` changes nothing; then the webhook forwards
the journaled alert and a worker runs `pitstop run hello` to success."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from pitstop.config import Settings
from pitstop.workers.devserver import SEARCH_ATTRIBUTES, DevServer, DevServerPorts, free_port
from pitstop.workers.errors import EXIT_USAGE, CliError
from pitstop.workers.identity import add_token
from pitstop.workers.temporal_setup import ensure_ready, registered_search_attributes

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "setup-test-token"
FINGERPRINT = "5e7a9"
INCIDENT = f"incident-{FINGERPRINT}-1795654800"  # startsAt 2026-11-26T01:00:00Z


@pytest.fixture(scope="module")
def bare_temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """A dev server like any Temporal a user points pitstop at: no pitstop search attributes."""
    server = DevServer(state_dir=tmp_path_factory.mktemp("bare-temporal"), ports=DevServerPorts.free(),
                       search_attributes={})
    server.start()
    yield server
    server.stop()


TEST_POLICY = Path(__file__).resolve().parents[1] / "data" / "policy-tests.yaml"  # its operator: alice


def _env(server: DevServer, state: Path) -> dict[str, str]:
    return {**os.environ, "PITSTOP_TEMPORAL__ADDRESS": server.address, "PITSTOP_CONFIG": "/nonexistent",
            "PITSTOP_STATE_DIR": str(state), "PITSTOP_WORKER__METRICS_PORT": "0",
            "PITSTOP_TEMPORAL__TASK_QUEUE": "setup-test", "PITSTOP_WEBHOOK__TOKEN": TOKEN}


def _pitstop(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pitstop.workers.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def _assert_refusal(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == EXIT_USAGE, result.stdout + result.stderr
    assert "Temporal namespace 'default'" in result.stderr, result.stderr
    for name in SEARCH_ATTRIBUTES:
        assert name in result.stderr
    assert "`pitstop setup`" in result.stderr and "BadSearchAttributes" in result.stderr


def _alert() -> dict[str, object]:
    return {"version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": "firing", "receiver": "pitstop",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
            "alerts": [{"status": "firing", "labels": {"alertname": "SetupTest", "service": "svc"},
                        "annotations": {}, "startsAt": "2026-11-26T01:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "", "fingerprint": FINGERPRINT}]}


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


async def test_refuse_then_setup_idempotently_then_everything_works(bare_temporal: DevServer, tmp_path: Path) -> None:
    env = _env(bare_temporal, tmp_path)
    client = await Client.connect(bare_temporal.address, data_converter=pydantic_data_converter)
    assert not set(SEARCH_ATTRIBUTES) & set(await registered_search_attributes(client, namespace="default"))

    # the check itself is quick and says what to do
    started = time.monotonic()
    with pytest.raises(CliError) as refused:
        await ensure_ready(client, Settings(temporal={"address": bare_temporal.address}))
    assert time.monotonic() - started < 2.0
    assert f"at {bare_temporal.address}" in refused.value.message and "`pitstop setup`" in refused.value.message

    # the processes a user starts refuse at once, before running anything
    _assert_refusal(_pitstop(env, "worker", timeout=30))
    up = _pitstop(env, "up", "--temporal", bare_temporal.address, "--no-sandbox", timeout=30)
    _assert_refusal(up)
    assert "worker and webhook started" not in up.stdout

    # ... a wrong namespace is named too
    wrong = _pitstop({**env, "PITSTOP_TEMPORAL__NAMESPACE": "nope"}, "setup")
    assert wrong.returncode == EXIT_USAGE and "namespace 'nope' does not exist" in wrong.stderr, wrong.stderr

    # the webhook starts anyway, journals the alert, forwards nothing and says why
    port = free_port()
    log_path = tmp_path / "webhook.log"
    webhook = subprocess.Popen([sys.executable, "-m", "pitstop.workers.webhook"],
                               env={**env, "PITSTOP_WEBHOOK__LISTEN": f"127.0.0.1:{port}",
                                    "PITSTOP_SECURITY__POLICY_FILE": str(TEST_POLICY)}, cwd=ROOT,
                               stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
    worker: subprocess.Popen[bytes] | None = None
    try:
        url = f"http://127.0.0.1:{port}"

        def health() -> dict[str, object]:
            try:
                return dict(httpx.get(url + "/healthz", timeout=2).json())
            except httpx.HTTPError:
                return {}

        _wait(lambda: health().get("temporal_namespace") == "not set up", 30, "the webhook's namespace check")
        answer = httpx.post(url + "/alerts", json=_alert(), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert answer.status_code == 200 and answer.json()["incidents"][0]["delivered"] == "accepted", answer.text
        log_text = log_path.read_text()
        assert "lacks pitstop's search attributes" in log_text and "pitstop setup" in log_text, log_text
        time.sleep(1)
        assert health()["backlog"] == 1
        with pytest.raises(Exception, match="not found"):
            await client.get_workflow_handle(INCIDENT).describe()

        # pitstop setup registers them; a second run changes nothing
        first = _pitstop(env, "setup")
        assert first.returncode == 0, first.stderr
        assert "registered search attributes RunbookName (Keyword)" in first.stdout, first.stdout
        registered = await registered_search_attributes(client, namespace="default")
        assert {name: registered[name] for name in SEARCH_ATTRIBUTES} == SEARCH_ATTRIBUTES
        second = _pitstop(env, "setup")
        assert second.returncode == 0 and "nothing to do" in second.stdout, second.stdout + second.stderr
        assert await registered_search_attributes(client, namespace="default") == registered

        # the webhook notices on its next check and forwards the journaled alert
        _wait(lambda: health().get("temporal_namespace") == "ready" and health().get("backlog") == 0, 40,
              "the webhook to forward its journal after setup")
        assert (await client.get_workflow_handle(INCIDENT).describe()).id == INCIDENT

        # a worker starts and a run completes
        worker = subprocess.Popen([sys.executable, "-m", "pitstop.workers.cli", "worker"], env=env, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        # ... started through the webhook's pitstop API as a verified user (docs/security.md)
        alice = {"PITSTOP_IDENTITY__API_URL": url,
                 "PITSTOP_IDENTITY__TOKEN": add_token(tmp_path / "api-tokens.yaml", "alice", groups=[])}
        run = _pitstop({**env, **alice}, "run", "hello", "-i", "name=setup", timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "succeeded" in run.stdout, run.stdout
    finally:
        for process in (worker, webhook):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
