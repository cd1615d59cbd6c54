"""`deploy/rbac.yaml` and `docs/permissions.md` describe the same grants, and every activity that touches a
cluster is accounted for in the documentation (least privilege follows the code: a new verb changes both files
in one commit). Whether the grants are *enough* is proven in the sandbox (tests/sandbox/test_rbac_worker.py)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from temporalio import activity

from pitstop.activities import build_activities
from pitstop.config import Settings
from pitstop.workers.clients import build_activity_clients

from .test_activity_wiring import write_kubeconfig

REPO = Path(__file__).resolve().parents[2]
RBAC = REPO / "deploy" / "rbac.yaml"
PERMISSIONS = REPO / "docs" / "permissions.md"

Grant = tuple[str, str, str, str]  # (ClusterRole, API group, resource, verb)


def granted() -> set[Grant]:
    grants: set[Grant] = set()
    for doc in yaml.safe_load_all(RBAC.read_text()):
        if not doc or doc["kind"] != "ClusterRole":
            continue
        for rule in doc["rules"]:
            grants |= {(doc["metadata"]["name"], group, resource, verb)
                       for group in rule["apiGroups"] for resource in rule["resources"] for verb in rule["verbs"]}
    return grants


def documented() -> set[Grant]:
    """The rows of the per-ClusterRole tables: | `group` | resources | verbs | activities | why |."""
    grants: set[Grant] = set()
    role = None
    for line in PERMISSIONS.read_text().splitlines():
        if heading := re.match(r"## ClusterRole `([^`]+)`", line):
            role = heading.group(1)
        elif line.startswith("## "):
            role = None
        elif role and line.startswith("| `"):
            group, resources, verbs = (cell.strip() for cell in line.strip("|").split("|")[:3])
            group = group.strip("`").strip('"')
            grants |= {(role, group, resource.strip(), verb.strip())
                       for resource in resources.split(",") for verb in verbs.split(",")}
    return grants


def test_the_documented_grants_are_exactly_the_granted_ones() -> None:
    assert granted(), "deploy/rbac.yaml has no ClusterRole rules"
    assert documented() == granted(), (
        f"only in docs/permissions.md: {sorted(documented() - granted())}; "
        f"only in deploy/rbac.yaml: {sorted(granted() - documented())}"
    )


def test_no_wildcards_no_secrets_no_rbac_objects() -> None:
    for role, group, resource, verb in granted():
        assert "*" not in (group, resource, verb), (role, group, resource, verb)
        assert resource not in {"secrets", "serviceaccounts/token"}, (role, resource, verb)
        if resource in {"configmaps", "serviceaccounts"}:  # sensitive: only roles bound per namespace, never here
            assert (role, verb) in {("pitstop-backup-reader", "list"), ("pitstop-data-endpoint", "get"),
                                    ("pitstop-data-endpoint", "patch")}, (role, resource, verb)
        assert group != "rbac.authorization.k8s.io", (role, resource, verb)
    assert {v for _, _, _, v in granted()} <= {"get", "list", "create", "update", "patch", "delete"}  # no watch, escalate, bind, impersonate


def test_every_cluster_activity_is_accounted_for_in_the_permissions(tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kc", ["a"])
    activity_set = build_activities(build_activity_clients(Settings(kubernetes={"regions": {"a": {"kubeconfig": kubeconfig}}})))
    regional = {str(activity._Definition.must_from_callable(fn).name) for fn in activity_set.regional["a"]}
    text = PERMISSIONS.read_text()
    missing = [name for name in sorted(regional)
               if f"`{name}`" not in text and f"`{name.split('.', 1)[1]}`" not in text and f".{name.split('.', 1)[1]}`" not in text]
    assert regional and not missing, f"activities that touch a cluster but are not in docs/permissions.md: {missing}"


def test_the_per_namespace_roles_are_never_bound_by_the_file() -> None:
    bound = {doc["roleRef"]["name"] for doc in yaml.safe_load_all(RBAC.read_text())
             if doc and doc["kind"] in ("ClusterRoleBinding", "RoleBinding")}
    assert not {"pitstop-backup-reader", "pitstop-data-endpoint", "pitstop-chaos"} & bound
