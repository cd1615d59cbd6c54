"""The shipped policy (runbooks/policy.yaml): valid, described by the up-to-date JSON Schema, and it declares
every group the shipped runbooks and the remediation catalog name as approvers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

from pitstop.access import AccessPolicy, AccessRequest, Action, Identity, Target
from pitstop.config import SHIPPED_RUNBOOKS_DIR
from pitstop.policy import load_policy
from pitstop.policy.schema import SCHEMA_FILE_NAME, policy_json_schema_text

POLICY_FILE = SHIPPED_RUNBOOKS_DIR / "policy.yaml"
SCHEMA_FILE = SHIPPED_RUNBOOKS_DIR / SCHEMA_FILE_NAME


def test_schema_file_is_up_to_date() -> None:
    assert SCHEMA_FILE.read_text() == policy_json_schema_text(), "run `pitstop policy schema --write`"


def test_schema_validates_the_shipped_policy_and_rejects_a_typo() -> None:
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    assert [e.message for e in validator.iter_errors(yaml.safe_load(POLICY_FILE.read_text()))] == []
    bad = {"rules": [{"subjects": "*", "actions": ["approve"], "runbook": ["x"]}]}
    assert any("runbook" in e.message for e in validator.iter_errors(bad))


def test_groups_named_by_shipped_runbooks_and_catalog_are_declared() -> None:
    policy = load_policy(POLICY_FILE)
    named: dict[str, set[str]] = {}
    for path in SHIPPED_RUNBOOKS_DIR.glob("*.yaml"):
        for group in re.findall(r"group:([A-Za-z0-9][A-Za-z0-9._@-]*)", path.read_text()):
            named.setdefault(group, set()).add(path.name)
    assert {"restart-service.yaml", "remediation-catalog.yaml"} <= set().union(*named.values())
    assert {g: files for g, files in named.items() if g not in policy.groups} == {}


def test_shipped_policy_decisions() -> None:
    policy: AccessPolicy = load_policy(POLICY_FILE)  # what the API and validators program against (mypy checks it)

    def allowed(groups: set[str], action: Action, runbook: str, namespace: str | None = "shop") -> bool:
        identity = Identity(subject="someone", groups=frozenset(groups), method="token-file")
        return policy.decide(AccessRequest(identity=identity, action=action, runbook=runbook,
                                           target=Target(namespace=namespace))).allowed

    assert allowed({"sre-oncall"}, Action.APPROVE, "restart-service")
    assert allowed({"sre-oncall"}, Action.INCIDENT_APPROVE, "incident")
    assert not allowed({"sre-oncall"}, Action.RELEASE_PROMOTE, "release")
    assert allowed({"release-managers"}, Action.RELEASE_PROMOTE, "release")
    assert not allowed({"developers"}, Action.ABORT, "restart-service")
    assert not allowed(set(), Action.START, "hello")
    assert not allowed({"sre-lead"}, Action.ABORT, "restart-service", namespace="kube-system")


def test_cli_check_and_explain(tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pitstop.workers.cli", "policy", *args], capture_output=True, text=True,
                              timeout=60, env={**os.environ, "PITSTOP_CONFIG": str(tmp_path / "none.yaml")})

    ok = cli("check", str(POLICY_FILE))
    assert ok.returncode == 0 and "valid, 9 rule(s)" in ok.stdout, ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {id: x, subjects: [group:ghost], actions: [approve]}\n")
    refused = cli("check", str(bad))
    assert refused.returncode == 2
    assert refused.stderr.strip() == f"pitstop: error: {bad}: rules[0] (x).subjects[0]: group 'ghost' is not declared under `groups`"
    denied = cli("explain", "--user", "lee", "--group", "sre-lead", "--action", "abort", "--runbook", "hello",
                 "--namespace", "kube-system", "--file", str(POLICY_FILE))
    assert denied.returncode == 1 and "denied by rule no-control-plane-namespaces" in denied.stdout
