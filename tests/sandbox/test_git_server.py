"""The sandbox's git server (git http-backend behind a loopback HTTP server) with pitstop's git access
(activities/git_access.py): token required, push and fetch, sign-off trailer, idempotent and concurrent commits."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pitstop.activities.git_access import GitAccessError, GitRemote, GitWorkspace
from pitstop.sandbox.git_server import GitServer

pytestmark = pytest.mark.sandbox


def test_push_fetch_and_concurrent_commits(tmp_path: Path) -> None:
    server = GitServer(tmp_path / "repos")
    try:
        server.create_repo("fleet-x")
        url = server.repo_url("fleet-x")
        with pytest.raises(GitAccessError) as refused:
            GitWorkspace(GitRemote(url=url, token="wrong"), tmp_path / "intruder").sync()
        assert "wrong" not in str(refused.value)
        first = GitWorkspace(GitRemote(url=url, token=server.token), tmp_path / "a")
        second = GitWorkspace(GitRemote(url=url, token=server.token), tmp_path / "b")
        assert first.sync() is None  # empty repository
        sha = first.commit_files({"team/a.yaml": "a: 1\n"}, message="seed", sign_off="pitstop run r1")
        assert sha and first.commit_files({"team/a.yaml": "a: 1\n"}, message="again", sign_off="pitstop run r1") is None
        assert second.sync() == sha and second.read("team/a.yaml") == "a: 1\n"
        # `first` commits on top of what `second` has not seen yet: `second`'s commit syncs and recomputes
        first.commit_files({"team/b.yaml": "b: 1\n"}, message="b", sign_off="pitstop run r2")
        head = second.commit(lambda read: {"team/a.yaml": (read("team/a.yaml") or "") + "c: 1\n"}, message="c",
                             sign_off="pitstop run r3")
        assert head is not None
        log = subprocess.run(["git", "-C", str(tmp_path / "repos" / "fleet-x.git"), "log", "--format=%s|%(trailers:key=Signed-off-by,valueonly)"],
                             capture_output=True, text=True, check=True).stdout
        assert log.split("\n\n")[0].startswith("c|pitstop run r3"), log
        assert {"seed", "b", "c"} <= {line.split("|")[0] for line in log.splitlines() if "|" in line}
        assert server.token not in log
    finally:
        server.close()


def test_a_proposal_is_a_branch_off_the_remote_branch_made_once(tmp_path: Path) -> None:
    """`GitWorkspace.propose` (a revert under the `branch` policy): the branch starts at the remote branch's head, the
    remote branch does not move, a retry finds the branch and pushes nothing, and nothing to change is None."""
    server = GitServer(tmp_path / "repos")
    try:
        server.create_repo("fleet-y")
        workspace = GitWorkspace(GitRemote(url=server.repo_url("fleet-y"), token=server.token), tmp_path / "w")
        main = workspace.commit_files({"team/a.yaml": "image: v2\n"}, message="seed", sign_off="pitstop run r0")
        change = {"team/a.yaml": "image: v1\n"}
        proposed = workspace.propose(lambda _read: change, branch="pitstop/revert-a-1234", message="revert a",
                                     sign_off="pitstop run r1")
        assert proposed is not None and proposed[1]
        assert workspace.propose(lambda _read: change, branch="pitstop/revert-a-1234", message="revert a",
                                 sign_off="pitstop run r1") == (proposed[0], False)
        assert workspace.sync() == main and workspace.read("team/a.yaml") == "image: v2\n"
        bare = str(tmp_path / "repos" / "fleet-y.git")
        parent = subprocess.run(["git", "-C", bare, "rev-parse", f"{proposed[0]}^"], capture_output=True, text=True,
                                check=True).stdout.strip()
        shown = subprocess.run(["git", "-C", bare, "show", "pitstop/revert-a-1234:team/a.yaml"], capture_output=True,
                               text=True, check=True).stdout
        assert parent == main and shown == "image: v1\n"
        assert workspace.propose(lambda _read: {"team/a.yaml": "image: v2\n"}, branch="pitstop/revert-a-5678",
                                 message="nothing", sign_off="pitstop run r2") is None
    finally:
        server.close()
