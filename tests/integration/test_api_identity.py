"""Verified identity through the authenticated pitstop API (the real webhook process's `serve`, the real Temporal
dev server, a real runbook worker): for every operator action, a forged `--as`, an expired OIDC token, a token
signed by a key the issuer's JWKS does not hold (served over HTTP by an in-test issuer with a real RSA key) and a
valid identity outside the policy are refused, each with an audit record, and nothing changes; the allowed
identity acts and its verified name — not the one typed after `--as` — is what the run's history records.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from pitstop.config import OidcSettings, Settings
from pitstop.incidents import INCIDENT_WORKFLOW, IncidentStart
from pitstop.runbook.validation import validate_catalog
from pitstop.schedules.validation import parse_schedules
from tests.fixtures.oidc_issuer import AUDIENCE, TestIssuer, serving_issuer
from pitstop.identity.start_claims import STARTED_BY_MEMO, start_claim_key_path
from pitstop.policy import guard, parse_policy
from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest
from tests.fixtures.pitstop_api import TEST_POLICY, RunningApi, running_api
from tests.fixtures.worker_reach import TEST_REACH, TEST_WORKER_ENV
from pitstop.workers import schedules
from pitstop.workers.run_history import fetch_chain, render, timeline

from .runbook_harness import TEST_RUNBOOKS, engine, start, wait_until

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Objects:
    run: WorkflowHandle[Any, Any]
    release: WorkflowHandle[Any, Any]
    incident: WorkflowHandle[Any, Any]
    schedule_id: str


@dataclass
class Stack:
    api: RunningApi
    issuer: TestIssuer
    objects: Objects
    client: Client
    env: dict[str, str]


@pytest.fixture
def issuer() -> Iterator[TestIssuer]:
    with serving_issuer() as served:
        yield served


@pytest_asyncio.fixture
async def stack(temporal_client: Client, pitstop_settings: Settings, task_queue: str, tmp_path: Path,
                issuer: TestIssuer) -> AsyncIterator[Stack]:
    settings = pitstop_settings.model_copy(update={"runbooks_dir": TEST_RUNBOOKS})
    oidc = OidcSettings(issuer=issuer.issuer, audience=AUDIENCE)
    schedule_id = f"api-{uuid.uuid4().hex[:6]}"
    runbooks = {name: runbook for name, (_, runbook) in validate_catalog(TEST_RUNBOOKS, reach=TEST_REACH)[0].items()}
    (entry,), _ = parse_schedules(f"schedules:\n  - {{id: {schedule_id}, owner: sre, runbook: hello, cron: '0 4 * * *'}}\n",
                                  "schedules.yaml", runbooks)
    async with engine(temporal_client, task_queue), \
            running_api(temporal_client, settings, tmp_path / "api", oidc=oidc) as api:
        await schedules.apply(temporal_client, [entry], task_queue=task_queue)
        run = await start(temporal_client, task_queue, "gated")
        release = await temporal_client.start_workflow(  # never polled: only described, signalled, terminated
            "ProgressiveRelease", {}, id=f"release-{uuid.uuid4().hex[:6]}", task_queue=f"{task_queue}-nobody")
        incident = await temporal_client.start_workflow(
            INCIDENT_WORKFLOW, IncidentStart(incident_id="inc-api", task_queue=task_queue),
            id=f"incident-{uuid.uuid4().hex[:6]}", task_queue=task_queue)
        await wait_until(run, lambda s: s.phase.value == "waiting_for_approval")
        env = dict(os.environ, PITSTOP_TEMPORAL__ADDRESS=temporal_client.service_client.config.target_host,
                   PITSTOP_TEMPORAL__TASK_QUEUE=task_queue, PITSTOP_RUNBOOKS_DIR=str(TEST_RUNBOOKS),
                   PITSTOP_CONFIG=str(tmp_path / "absent.yaml"), PITSTOP_STATE_DIR=str(tmp_path / "cli"),
                   **TEST_WORKER_ENV)
        try:
            yield Stack(api=api, issuer=issuer, client=temporal_client, env=env,
                        objects=Objects(run=run, release=release, incident=incident, schedule_id=schedule_id))
        finally:
            for handle in (run, release, incident):
                try:
                    await handle.terminate("test over")
                except Exception:  # noqa: BLE001 - already closed
                    pass
            await schedules.apply(temporal_client, [], task_queue=task_queue)


def actions(o: Objects) -> list[tuple[str, list[str], dict[str, Any], list[str]]]:
    """(name, API path, body, CLI arguments) of every operator action."""
    run, rel, inc, sched = o.run.id, o.release.id, o.incident.id, o.schedule_id
    return [
        ("start", ["runs"], {"runbook": "hello"}, ["run", "hello", "--detach"]),
        ("approve", ["runs", run, "approve"], {"step": "ok"}, ["approve", run, "--step", "ok"]),
        ("pause", ["runs", run, "pause"], {"reason": "x"}, ["pause", run]),
        ("resume", ["runs", run, "resume"], {}, ["resume", run]),
        ("abort", ["runs", run, "abort"], {}, ["abort", run]),
        ("release.promote", ["releases", rel, "promote"], {}, ["release", "promote", rel]),
        ("release.rollback", ["releases", rel, "rollback"], {}, ["release", "rollback", rel]),
        ("release.abort", ["releases", rel, "abort"], {}, ["release", "abort", rel]),
        ("incident.approve", ["incidents", inc, "approve"], {}, ["incident", "approve", inc]),
        ("schedule.pause", ["schedules", sched, "pause"], {"reason": "x"}, ["schedules", "pause", sched, "-m", "x"]),
        ("schedule.unpause", ["schedules", sched, "unpause"], {"reason": "x"}, ["schedules", "unpause", sched, "-m", "x"]),
        ("schedule.trigger", ["schedules", sched, "trigger"], {}, ["schedules", "trigger", sched]),
        ("schedule.delete", ["schedules", sched, "delete"], {}, ["schedules", "delete", sched]),
    ]


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pitstop.workers.cli", *args], env=env, cwd=str(REPO),
                          capture_output=True, text=True, timeout=60)


def audits(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "pitstop.api.audit"]


async def post(stack: Stack, path: list[str], body: dict[str, Any], token: str) -> httpx.Response:
    from urllib.parse import quote

    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(f"{stack.api.url}/api/v1/" + "/".join(quote(p, safe="") for p in path), json=body,
                               headers={"Authorization": f"Bearer {token}"})


async def test_every_action_refuses_forged_expired_wrongly_signed_and_unauthorised_identities(
        stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pitstop.api.audit")
    forger = {**stack.env, **stack.api.env_for("mallory")}
    refusals = {
        "expired": (stack.issuer.token("alice", groups=["sre"], expires_in=-120), 401, "the token has expired"),
        "wrongly signed": (stack.issuer.token("alice", groups=["sre"], rogue=True), 401, "signature does not verify"),
        "outside the policy": (stack.api.tokens["mallory"], 403, "access policy: mallory (no groups) may not"),
    }
    for name, path, body, args in actions(stack.objects):
        before = len(audits(caplog))
        forged = await asyncio.to_thread(cli, forger, *args, "--as", "alice")
        assert forged.returncode != 0, (name, forged.stdout)
        assert "--as alice is ignored" in forged.stderr and "(403)" in forged.stderr and "mallory (no groups) may not" in forged.stderr, \
            (name, forged.stderr)
        for kind, (token, status, reason) in refusals.items():
            answer = await post(stack, path, body, token)
            assert answer.status_code == status and reason in answer.json()["error"], (name, kind, answer.text)
        records = audits(caplog)[before:]
        assert [r["event"] for r in records] == ["access.denied"] * 4, (name, records)
        assert [r["subject"] for r in records] == ["mallory", None, None, "mallory"], (name, records)
        assert all(r["reason"] for r in records)
        expected = "schedule.change" if name.startswith("schedule.") else name.replace("release.abort", "abort")
        assert records[0]["action"] == records[-1]["action"] == expected, records
    # nothing changed: the run still waits for its approval, the schedule exists unpaused, no run was started
    status = await stack.objects.run.query("status")
    assert status["phase"] == "waiting_for_approval" and not status["paused"]
    described = await stack.client.get_schedule_handle(stack.objects.schedule_id).describe()
    assert not described.schedule.state.paused and described.info.num_actions == 0
    history = await stack.objects.release.fetch_history()
    assert not [e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")]


async def test_allowed_identities_act_and_their_verified_names_are_in_the_history(
        stack: Stack, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.INFO, logger="pitstop.api.audit")
    o = stack.objects
    token_file = tmp_path / "alice.jwt"
    token_file.write_text(stack.issuer.token("alice", groups=["sre"]))  # OIDC: alice of group sre
    as_alice = {k: v for k, v in stack.env.items() if k != "PITSTOP_IDENTITY__TOKEN"}
    as_alice["PITSTOP_IDENTITY__API_URL"] = stack.api.url

    whoami = await asyncio.to_thread(cli, as_alice, "whoami", "--token-file", str(token_file))
    assert whoami.stdout.strip() == "alice (oidc) groups: sre", whoami.stdout + whoami.stderr
    approved = await asyncio.to_thread(cli, as_alice, "approve", o.run.id, "--step", "ok", "--as", "bob",
                                       "--token-file", str(token_file), "-m", "verified")
    assert approved.returncode == 0 and "approved ok as alice" in approved.stdout, approved.stdout + approved.stderr
    await o.run.result()
    shown = render(timeline(await fetch_chain(stack.client, o.run.id)))
    assert "approve by alice" in shown and "approve by bob" not in shown, shown

    started = await asyncio.to_thread(cli, {**stack.env, **stack.api.env_for("carol")}, "run", "gated", "--detach")
    assert started.returncode == 0 and " as carol" in started.stdout, started.stdout + started.stderr
    run_id = started.stdout.split()[1]
    handle = stack.client.get_workflow_handle(run_id)
    for op in ("pause", "resume", "abort"):
        answer = await post(stack, ["runs", run_id, op], {"reason": f"{op} test"}, stack.api.tokens["dave"])
        assert answer.status_code == 200 and answer.json()["identity"] == "dave", answer.text
    await handle.result()
    history = json.dumps(timeline(await fetch_chain(stack.client, run_id)), default=str)
    assert "carol" in history and "dave" in history, history

    paused = await post(stack, ["schedules", o.schedule_id, "pause"], {"reason": "freeze"}, stack.api.tokens["bob"])
    assert paused.status_code == 200, paused.text
    assert (await stack.client.get_schedule_handle(o.schedule_id).describe()).schedule.state.note == "paused by bob: freeze"
    aborted = await post(stack, ["releases", o.release.id, "abort"], {"reason": "bad canary"}, stack.api.tokens["alice"])
    assert aborted.status_code == 200, aborted.text
    signals = [e.workflow_execution_signaled_event_attributes for e in (await o.release.fetch_history()).events
               if e.HasField("workflow_execution_signaled_event_attributes")]
    assert [s.signal_name for s in signals] == ["abort"] and b"bad canary by alice" in signals[0].input.payloads[0].data
    decided = await post(stack, ["incidents", o.incident.id, "approve"], {}, stack.api.tokens["carol"])
    assert decided.status_code == 409 and "not waiting for an approval" in decided.json()["error"], decided.text

    allowed = [r for r in audits(caplog) if r["event"] == "access.allowed"]
    assert [(r["subject"], r["action"]) for r in allowed] == [
        ("alice", "approve"), ("carol", "start"), ("dave", "pause"), ("dave", "resume"), ("dave", "abort"),
        ("bob", "schedule.change"), ("alice", "abort"), ("carol", "incident.approve")]
    assert allowed[0]["method"] == "oidc" and allowed[1]["method"] == "token-file"


# ---------------------------------------------------------------- runs started outside the API (the Web UI)

UI_POLICY = TEST_POLICY + """
  - {id: web-ui-hello, subjects: ["user:web-ui"], actions: [start], runbooks: [hello]}
"""


async def test_a_run_started_outside_the_api_is_checked_as_the_web_ui_when_it_starts(
        temporal_client: Client, pitstop_settings: Settings, task_queue: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """The worker re-checks who started a top-level run: the API's signed claim (memo), else `web-ui`."""
    caplog.set_level(logging.INFO, logger="pitstop.api.audit")
    settings = pitstop_settings.model_copy(update={"runbooks_dir": TEST_RUNBOOKS})
    guard.install(parse_policy(UI_POLICY, source="UI_POLICY"))
    try:
        async with running_api(temporal_client, settings, tmp_path / "api") as api, \
                engine(temporal_client, task_queue, start_claim_key=start_claim_key_path(api.settings)):
            started = await post_as(api, "alice", {"runbook": "gated"})
            assert started.status_code == 200, started.text
            through_api = temporal_client.get_workflow_handle(started.json()["workflow_id"])
            await wait_until(through_api, lambda s: s.phase.value == "waiting_for_approval")

            async def direct(runbook: str, memo: dict[str, Any] | None = None) -> Any:
                """What the Web UI's start form does: RunbookWorkflow with a JSON input, straight to Temporal."""
                handle = await temporal_client.start_workflow(
                    RUNBOOK_WORKFLOW, RunbookRequest(runbook=runbook, trigger="ui", started_by="alice"),
                    id=f"ui-{runbook}-{uuid.uuid4().hex[:6]}", task_queue=task_queue, memo=memo,
                    result_type=RunbookOutcome)
                try:
                    return await asyncio.wait_for(handle.result(), 60)
                except WorkflowFailureError as exc:
                    return str(getattr(exc.cause, "message", exc.cause))

            assert (await direct("hello")).status == "succeeded"  # the policy lets the Web UI start `hello`
            refused = await direct("gated")
            assert refused.startswith("start refused by the access policy (no start claim (not started through the "
                                      "pitstop API)): web-ui (groups: web-ui) may not start"), refused
            assert "default deny" in refused, refused
            copied = await direct("gated", memo=await claim_of(through_api))  # the API's claim on another run
            assert "(the start claim's signature does not verify): web-ui" in copied, copied
            forged = await direct("gated", memo={STARTED_BY_MEMO: {"subject": "alice", "groups": ["sre"],
                                                                   "method": "token-file", "signature": "0" * 64}})
            assert "(the start claim's signature does not verify): web-ui" in forged, forged
            await through_api.terminate("test over")
    finally:
        guard.install(None)
    worker_audits = [r for r in audits(caplog) if r.get("remote") == "worker"]
    assert [(r["subject"], r["runbook"], r["event"]) for r in worker_audits] == [
        ("alice", "gated", "access.allowed"), ("web-ui", "hello", "access.allowed"),
        ("web-ui", "gated", "access.denied"), ("web-ui", "gated", "access.denied"), ("web-ui", "gated", "access.denied")]


async def post_as(api: RunningApi, user: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(f"{api.url}/api/v1/runs", json=body, headers=api.bearer(user))


async def claim_of(handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    described = await handle.describe()
    return {STARTED_BY_MEMO: await described.memo_value(STARTED_BY_MEMO)}
