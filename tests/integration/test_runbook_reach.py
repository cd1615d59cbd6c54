"""What runbook authors can reach, on a production-configured worker (the product's `build_activities`, the real
Temporal dev server): a runbook naming an env var outside `security.env_allowlist` or a host outside
`security.allowed_hosts` is refused at `runbook.load` (the run fails at once, naming file, line, field, variable
and host), `debug.*` steps do not exist there, and an allowed `http.call` to a loopback server works with the
secret it sent masked in the response excerpt it reports."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from pitstop.activities import build_activities
from pitstop.activities.clients import ActivityClients
from pitstop.config import Settings
from pitstop.redaction import MASK
from pitstop.runbook.request import RUNBOOK_WORKFLOW, RunbookOutcome, RunbookRequest
from tests.fixtures.temporal import running_worker
from pitstop.workflows import ALL_WORKFLOWS

pytestmark = pytest.mark.integration

TOKEN = "Bearer r3ach-T0ken-0123456789abcdef"

LEAKY = """\
name: leaky
steps:
  - id: post
    uses: http.call
    with:
      url: "{allowed}/report"
      header_env: {{X-Report: AWS_SECRET_ACCESS_KEY}}
  - id: beacon
    uses: http.call
    with: {{url: "https://collector.example.net/in"}}
"""
DEBUGGING = "name: debugging\nsteps:\n  - {id: work, uses: debug.change, with: {what: anything}}\n"
ALLOWED = """\
name: allowed
steps:
  - id: call
    uses: http.call
    with:
      url: "{allowed}/deploy"
      method: POST
      header_env: {{Authorization: PITSTOP_RUNBOOK_DEPLOY_TOKEN}}
      body: {{version: 2}}
"""


@pytest.fixture
def echo_server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A loopback HTTP server that answers with the headers it received (as a careless API might)."""
    received: list[dict[str, str]] = []

    class Echo(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append(dict(self.headers))
            body = json.dumps({"you_sent": dict(self.headers)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


async def run(client: Client, task_queue: str, runbook: str) -> RunbookOutcome:
    return await client.execute_workflow(
        RUNBOOK_WORKFLOW, RunbookRequest(runbook=runbook, trigger="test", started_by="pytest"),
        id=f"{runbook}-{uuid.uuid4().hex[:8]}", task_queue=task_queue, result_type=RunbookOutcome,
    )


async def test_production_worker_refuses_what_runbook_authors_may_not_reach(
    temporal_client: Client, task_queue: str, tmp_path: Path, echo_server: tuple[str, list[dict[str, str]]],
) -> None:
    allowed_url, received = echo_server
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "leaky.yaml").write_text(LEAKY.format(allowed=allowed_url))
    (runbooks / "debugging.yaml").write_text(DEBUGGING)
    (runbooks / "allowed.yaml").write_text(ALLOWED.format(allowed=allowed_url))
    settings = Settings(  # production defaults but for the hosts: debug steps off, env allowlist PITSTOP_RUNBOOK_*
        runbooks_dir=runbooks, state_dir=tmp_path / "state", temporal={"task_queue": task_queue},
        worker={"metrics_port": 0}, security={"allowed_hosts": ["127.0.0.1"]},
    )
    assert not settings.worker.enable_debug_steps and "PITSTOP_RUNBOOK_*" in settings.security.env_allowlist
    environ = {"PITSTOP_RUNBOOK_DEPLOY_TOKEN": TOKEN, "AWS_SECRET_ACCESS_KEY": "aws-secret-value-123"}
    activity_set = build_activities(ActivityClients(settings=settings, environ=environ, temporal=temporal_client))
    registered = {fn.__temporal_activity_definition.name for fn in activity_set.shared}  # type: ignore[attr-defined]
    assert "runbook.log" in registered and not {n for n in registered if n.startswith("runbook.debug_")}

    async with running_worker(temporal_client, task_queue=task_queue, workflows=ALL_WORKFLOWS,
                              activities=activity_set.shared):
        with pytest.raises(WorkflowFailureError) as leaky:
            await run(temporal_client, task_queue, "leaky")
        refused = leaky.value.cause
        assert isinstance(refused, ApplicationError) and refused.type == "RunbookInvalid"
        assert refused.message.startswith("leaky is not valid; nothing was started:")
        assert (f"{runbooks / 'leaky.yaml'}:7: step 'post', field 'with.header_env.X-Report': environment variable "
                "AWS_SECRET_ACCESS_KEY is not in the worker's `security.env_allowlist`") in refused.message
        assert (f"{runbooks / 'leaky.yaml'}:10: step 'beacon', field 'with.url': host collector.example.net is not "
                "in the worker's `security.allowed_hosts` (127.0.0.1)") in refused.message
        assert received == []  # nothing was sent anywhere

        with pytest.raises(WorkflowFailureError) as debugging:
            await run(temporal_client, task_queue, "debugging")
        assert isinstance(debugging.value.cause, ApplicationError)
        assert (f"{runbooks / 'debugging.yaml'}:3: step 'work', field 'uses': step type 'debug.change' is a test-only "
                "debug step") in debugging.value.cause.message

        outcome = await run(temporal_client, task_queue, "allowed")
    assert outcome.status == "succeeded", outcome.error
    assert received[-1]["Authorization"] == TOKEN  # the worker resolved the allowlisted secret and sent it
    excerpt = outcome.outputs["call"]["response_excerpt"]
    assert "you_sent" in excerpt and MASK in excerpt and "r3ach-T0ken" not in json.dumps(outcome.outputs)
