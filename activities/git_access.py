"""Git access for GitOps-managed services: one small interface over the `git` command.

`GitRemote` is where a repository lives: a local path, or an HTTP(S) URL with a token read from the worker's
environment (`token_env`) — the token travels in an `Authorization: Bearer` header set through git's
environment-only config (`GIT_CONFIG_COUNT`), never on a command line, in a URL, in a commit or in a log line.
`GitWorkspace` keeps a clone in a work directory and makes one commit: sync to the remote branch, let the caller
compute the files from what is there, commit with a `Signed-off-by` trailer naming the run, push; a push refused
because the branch moved (someone else committed) syncs and recomputes, a bounded number of times. A commit
that would change nothing is not made (a retried activity finds its change already in git).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

GIT_TIMEOUT = 60.0
PUSH_ATTEMPTS = 5
COMMITTER = ("pitstop", "pitstop@localhost")

Reader = Callable[[str], str | None]
"""repository-relative path -> its text on the synced branch, or None if absent"""


class GitAccessError(RuntimeError):
    """A git command failed; the message names the repository (never its token) and git's own error."""


@dataclass(frozen=True)
class GitRemote:
    url: str
    """an HTTP(S) URL or a local path (a bare repository)"""
    branch: str = "main"
    token: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, url: str, *, branch: str, token_env: str | None, environ: Mapping[str, str]) -> GitRemote:
        token = environ.get(token_env) if token_env else None
        if token_env and not token:
            raise GitAccessError(f"git repository {url}: the token variable {token_env} is not set in the worker's environment")
        return cls(url=url, branch=branch, token=token)

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_CONFIG")}
        env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_AUTHOR_NAME": COMMITTER[0], "GIT_AUTHOR_EMAIL": COMMITTER[1],
                    "GIT_COMMITTER_NAME": COMMITTER[0], "GIT_COMMITTER_EMAIL": COMMITTER[1]})
        if self.token:
            env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
                        "GIT_CONFIG_VALUE_0": f"Authorization: Bearer {self.token}"})
        return env


class GitWorkspace:
    """A clone of one remote branch in `work_dir` (created on first use)."""

    def __init__(self, remote: GitRemote, work_dir: Path) -> None:
        self.remote = remote
        self.work_dir = work_dir

    def _git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["git", "-C", str(self.work_dir), *args], env=self.remote.environment(),
                              capture_output=True, text=True, timeout=GIT_TIMEOUT, check=False)
        if check and done.returncode != 0:
            raise GitAccessError(f"git {args[0]} on {self.remote.url} failed: {done.stderr.strip()[-800:]}")
        return done

    def sync(self) -> str | None:
        """Fetch and reset to the remote branch; its head commit, or None for an empty repository."""
        if not (self.work_dir / ".git").exists():
            self.work_dir.mkdir(parents=True, exist_ok=True)
            self._git("init", "--quiet", f"--initial-branch={self.remote.branch}")
            self._git("remote", "add", "origin", self.remote.url)
        fetched = self._git("fetch", "--quiet", "origin", self.remote.branch, check=False)
        if fetched.returncode != 0:
            if "couldn't find remote ref" in fetched.stderr:
                return None
            raise GitAccessError(f"git fetch of {self.remote.url} failed: {fetched.stderr.strip()[-800:]}")
        self._git("checkout", "--quiet", "-B", self.remote.branch, "FETCH_HEAD")
        self._git("reset", "--quiet", "--hard", "FETCH_HEAD")
        self._git("clean", "--quiet", "-fdx")
        return self._git("rev-parse", "HEAD").stdout.strip()

    def read(self, path: str) -> str | None:
        file = self.work_dir / path
        return file.read_text() if file.is_file() else None

    def _commit_locally(self, files: dict[str, str], *, message: str, sign_off: str) -> bool:
        """Write `files` and commit them in the clone; False when they change nothing (no commit made)."""
        for path, text in files.items():
            target = self.work_dir / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        self._git("add", "--all")
        if self._git("diff", "--cached", "--quiet", check=False).returncode == 0:
            return False
        self._git("commit", "--quiet", "-m", message, "--trailer", f"Signed-off-by: {sign_off} <{COMMITTER[1]}>")
        return True

    def commit(self, compute: Callable[[Reader], dict[str, str]], *, message: str, sign_off: str) -> str | None:
        """Commit the files `compute` returns (path -> text) on the remote branch; the new head, or None when the
        branch already held them (no commit made)."""
        for _ in range(PUSH_ATTEMPTS):
            self.sync()
            if not self._commit_locally(compute(self.read), message=message, sign_off=sign_off):
                return None
            pushed = self._git("push", "--quiet", "origin", f"HEAD:refs/heads/{self.remote.branch}", check=False)
            if pushed.returncode == 0:
                return self._git("rev-parse", "HEAD").stdout.strip()
            if "rejected" not in pushed.stderr and "fetch first" not in pushed.stderr:
                raise GitAccessError(f"git push to {self.remote.url} failed: {pushed.stderr.strip()[-800:]}")
        raise GitAccessError(f"git push to {self.remote.url}: the branch {self.remote.branch} kept moving ({PUSH_ATTEMPTS} attempts)")

    def propose(self, compute: Callable[[Reader], dict[str, str]], *, branch: str, message: str, sign_off: str) -> tuple[str, bool] | None:
        """Commit the files `compute` returns on a new branch `branch` started from the remote branch, and push it;
        (its head, whether this call pushed it). A branch that already exists is left as it is (a retry finds its
        own); None when the remote branch already holds the files (nothing to propose)."""
        existing = self._git("ls-remote", "origin", f"refs/heads/{branch}").stdout.split() if self.sync() else []
        if existing:
            return existing[0], False
        if not self._commit_locally(compute(self.read), message=message, sign_off=sign_off):
            return None
        self._git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}")
        head = self._git("rev-parse", "HEAD").stdout.strip()
        self.sync()  # the clone goes back to the remote branch
        return head, True

    def head(self) -> str:
        """The commit the clone's branch is on (after `sync` or `commit`: the remote branch's head)."""
        return self._git("rev-parse", "HEAD").stdout.strip()

    def contains(self, commit: str, revision: str) -> bool:
        """Whether `revision` (e.g. the commit an engine applied) is `commit` or comes after it on the branch."""
        if revision == commit:
            return True
        if self._git("cat-file", "-e", f"{revision}^{{commit}}", check=False).returncode != 0:
            self.sync()
        return self._git("merge-base", "--is-ancestor", commit, revision, check=False).returncode == 0

    def commit_files(self, files: dict[str, str], *, message: str, sign_off: str) -> str | None:
        return self.commit(lambda _read: files, message=message, sign_off=sign_off)
