"""`pitstop up` supervising its Temporal dev server: a kill -9 of the server while work is in flight.

One `pitstop up --no-sandbox` (a subprocess on free ports, like a user runs it) holds a runbook step that is
running, an approval that is waiting and an incident that is waiting for its alert to recover when the dev
server is killed with SIGKILL. `up` notices, says so, restarts the server on the same SQLite file and ports;
the worker and the webhook reconnect by themselves, the alert resolution that arrived while Temporal was
down is delivered from the webhook's journal, and every run finishes correctly. Then: when the server cannot
come back, `up` backs off, gives up with a clear message and a non-zero exit, and leaves no child behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from pitstop.incidents import ALERT_SIGNAL, IncidentPhase, IncidentStatus
from pitstop.runbook.request import RunbookOutcome
from pitstop.workers.devserver import DevServerPorts, free_port, port_is_open
from pitstop.workers.identity import add_token

from tests.fixtures.worker_reach import TEST_WORKER_ENV

from .runbook_harness import TEST_RUNBOOKS, step_state, wait_until
from .test_webhook import CATALOG, FIX_RUNBOOK
from .up_harness import child_pids, pids_with_environment, pitstop, start_up, stop_up, up_env, wait_for_line

pytestmark = pytest.mark.integration

TOKEN = "restart-test-token"
# the incident's alert matches the catalog's `fix-it` rule (severity warning: no approval), whose fix succeeds at
# once; with a long recovery deadline the incident then waits for the alert to resolve
RESTART_CATALOG = CATALOG.replace("recovery_deadline: 30s", "recovery_deadline: 10m")
assert RESTART_CATALOG != CATALOG, "test_webhook's catalog changed: set the recovery deadline here anew"


def alert(status: str) -> dict[str, Any]:
    return {
        "version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": status, "receiver": "pitstop",
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
        "alerts": [{
            "status": status,
            "labels": {"alertname": "ServiceBroken", "severity": "warning", "service": "cart", "namespace": "shop",
                       "region": "eu"},
            "annotations": {}, "startsAt": "2026-11-26T01:00:00Z",
            "endsAt": "2026-11-26T01:05:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
            "generatorURL": "", "fingerprint": "5e57a27ed0000001",
        }],
    }


def post_alert(url: str, status: str) -> httpx.Response:
    return httpx.post(url, json=alert(status), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)


async def wait_for_incident_phase(client: Client, incident: str, phase: IncidentPhase, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = (await client.get_workflow_handle(incident).query("status", result_type=IncidentStatus)).phase
            if last == phase:
                return
        except Exception as exc:  # noqa: BLE001 - not started yet
            last = exc
        await asyncio.sleep(0.2)
    raise AssertionError(f"{incident} never reached {phase}; last: {last}")


async def signalled_statuses(client: Client, workflow_id: str) -> list[str]:
    statuses = []
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        signalled = event.workflow_execution_signaled_event_attributes
        if event.HasField("workflow_execution_signaled_event_attributes") and signalled.signal_name == ALERT_SIGNAL:
            statuses.append(json.loads(signalled.input.payloads[0].data)["alert"]["status"])
    return statuses


async def completed_activity_ids(client: Client, workflow_id: str) -> list[str]:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    scheduled = {e.event_id: e.activity_task_scheduled_event_attributes.activity_id
                 for e in history.events if e.HasField("activity_task_scheduled_event_attributes")}
    return [scheduled[e.activity_task_completed_event_attributes.scheduled_event_id]
            for e in history.events if e.HasField("activity_task_completed_event_attributes")]


async def test_runs_in_flight_survive_a_kill_9_of_the_temporal_server_under_up(tmp_path: Path) -> None:
    ports = DevServerPorts.free()
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    for name in ("long.yaml", "gated.yaml"):
        shutil.copy(TEST_RUNBOOKS / name, runbooks / name)
    (runbooks / "remediation-catalog.yaml").write_text(RESTART_CATALOG)
    (runbooks / "incident-fix.yaml").write_text(FIX_RUNBOOK)
    webhook = f"127.0.0.1:{free_port()}"
    env = up_env(tmp_path / "state", ports)
    env.update(PITSTOP_RUNBOOKS_DIR=str(runbooks), PITSTOP_WEBHOOK__LISTEN=webhook, PITSTOP_WEBHOOK__TOKEN=TOKEN,
               PITSTOP_ALERTMANAGER__URL="http://127.0.0.1:9",  # nothing listens on the discard port
               **TEST_WORKER_ENV)  # a test worker: `long` uses debug.wait
    record = tmp_path / "completions.txt"
    log = tmp_path / "up.log"

    up = start_up(env, log)
    try:
        client = await Client.connect(f"127.0.0.1:{ports.frontend}", data_converter=pydantic_data_converter)
        started = pitstop(env, "run", "long", "--detach", "--id", "restart-step",
                          "-i", "seconds=25", "-i", f"record_to={record}")
        assert started.returncode == 0, started.stderr
        gated = pitstop(env, "run", "gated", "--detach", "--id", "restart-approval")
        assert gated.returncode == 0, gated.stderr
        opened = post_alert(f"http://{webhook}/alerts", "firing")
        assert opened.status_code == 200, opened.text
        incident = opened.json()["incidents"][0]["incident"]

        step = client.get_workflow_handle("restart-step", result_type=RunbookOutcome)
        approval = client.get_workflow_handle("restart-approval", result_type=RunbookOutcome)
        await wait_until(step, lambda s: step_state(s, "work") == "running", timeout=60)
        await wait_until(approval, lambda s: step_state(s, "ok") == "waiting_for_approval", timeout=60)
        await wait_for_incident_phase(client, incident, IncidentPhase.VERIFYING)

        servers = child_pids(up.pid, command_contains="server start-dev")
        assert len(servers) == 1, servers
        up.send_signal(signal.SIGSTOP)  # hold the supervisor: the outage lasts until the checks below are done
        try:
            os.kill(servers[0], signal.SIGKILL)
            while port_is_open("127.0.0.1", ports.frontend):
                time.sleep(0.05)
            # while Temporal is down the alert resolves: the webhook answers at once and journals it
            resolved = post_alert(f"http://{webhook}/alerts", "resolved")
            assert resolved.status_code == 200, resolved.text
            assert httpx.get(f"http://{webhook}/healthz", timeout=5).json()["backlog"] >= 1
            unreachable = pitstop(env, "status", "restart-step")
            assert unreachable.returncode == 3 and "cannot reach Temporal" in unreachable.stderr
        finally:
            up.send_signal(signal.SIGCONT)

        console = wait_for_line(log, "temporal dev server restarted", timeout=90)
        assert "[up] temporal dev server exited (code -9 (SIGKILL)); restarting in 1s" in console
        assert not Path(f"/proc/{servers[0]}").exists(), "the killed server was not reaped (a zombie)"
        assert len(child_pids(up.pid, command_contains="server start-dev")) == 1
        assert not record.exists(), "the step ended before Temporal came back: the test proves nothing"

        # `up` enforces its policy file (up_harness: only `alice`); mallory has a valid token, but no rule
        mallory = add_token(Path(env["PITSTOP_STATE_DIR"]) / "api-tokens.yaml", "mallory", groups=[])
        refused = pitstop({**env, "PITSTOP_IDENTITY__TOKEN": mallory}, "approve", "restart-approval", "--step", "ok")
        assert refused.returncode == 2 and "mallory (no groups) may not approve" in refused.stderr, refused.stderr
        approved = pitstop(env, "approve", "restart-approval", "--step", "ok")
        assert approved.returncode == 0, approved.stdout + approved.stderr
        step_outcome = await asyncio.wait_for(step.result(), timeout=120)
        approval_outcome = await asyncio.wait_for(approval.result(), timeout=60)
        recovered = await asyncio.wait_for(
            client.get_workflow_handle(incident, result_type=IncidentStatus).result(), timeout=60)

        assert step_outcome.status == "succeeded"
        assert len(record.read_text().splitlines()) == 1, record.read_text()
        ids = await completed_activity_ids(client, "restart-step")
        assert sorted(ids) == sorted(set(ids)), f"a step completed twice: {ids}"
        assert {"prepare", "work", "after"} <= set(ids)
        assert approval_outcome.status == "succeeded"
        assert "approved by alice" in (pitstop(env, "status", "restart-approval").stdout)
        assert recovered.phase == IncidentPhase.RECOVERED and recovered.outcome == "recovered by automation"
        assert await signalled_statuses(client, incident) == ["firing", "resolved"]

        console = log.read_text()
        # the worker and the webhook reconnected by themselves: up never had to restart them
        assert "worker exited" not in console and "webhook exited" not in console, console
    finally:
        stop_up(up)
    assert "stopped" in log.read_text()
    assert not port_is_open("127.0.0.1", ports.frontend)


def test_up_gives_up_with_a_clear_message_when_the_server_cannot_come_back(tmp_path: Path) -> None:
    """The killed server's port is taken by something else: every restart fails; `up` backs off, then exits."""
    ports = DevServerPorts.free()
    env = up_env(tmp_path / "state", ports)
    log = tmp_path / "up.log"
    up = start_up(env, log)
    squatter = socket.socket()
    try:
        assert len(pids_with_environment("PITSTOP_STATE_DIR", env["PITSTOP_STATE_DIR"])) == 4  # up and 3 children
        servers = child_pids(up.pid, command_contains="server start-dev")
        assert len(servers) == 1, servers
        os.kill(servers[0], signal.SIGKILL)
        wait_for_line(log, "temporal dev server exited (code -9 (SIGKILL)); restarting in 1s")
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", ports.frontend))
        squatter.listen()
        code = up.wait(timeout=120)
    finally:
        squatter.close()
        if up.poll() is None:
            stop_up(up)
    console = log.read_text()
    assert code == 3, console
    backoff = [line.split("; restarting in ")[1].split("s ")[0] for line in console.splitlines()
               if "; restarting in " in line]
    assert backoff == ["1", "2", "4", "8", "16"], console
    assert console.count("[up] temporal dev server did not start again: port 127.0.0.1:") == 5
    assert "giving up after 5 restarts in a row" in console
    assert "pitstop: error: the embedded Temporal server keeps failing" in console
    assert "[up] stopped" in console
    assert not pids_with_environment("PITSTOP_STATE_DIR", env["PITSTOP_STATE_DIR"]), "a child outlived `up`"
