"""Builds (or locates) the real Kubernetes control-plane binaries the fleet sandbox runs.

kube-apiserver, kube-controller-manager and kube-scheduler come from k8s.io/kubernetes, etcd from
go.etcd.io/etcd/server/v3, kwok and kwokctl from sigs.k8s.io/kwok: each group is a Go tools module
under `sandbox/go/` (go.mod/go.sum committed, sources fetched from the Go module proxy).

Binaries land in `$PITSTOP_CACHE_DIR/k8s/<key>/bin` (default `~/.cache/pitstop`), `<key>` naming the
versions plus a digest of the go.mod/go.sum files, so a version bump builds into a fresh directory and
an unchanged one is never rebuilt. `PITSTOP_K8S_BIN_DIR` points at a directory of binaries supplied by
the user instead (nothing is built then).

    python -m pitstop.sandbox.binaries build     # prints the bin dir; a go failure prints go's own error
    python -m pitstop.sandbox.binaries locate    # prints the bin dir if every binary is present, else fails
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel

from pitstop.config import default_cache_dir

KUBERNETES_VERSION = "v1.35.4"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"

GO_TOOLS_DIR = Path(__file__).resolve().parent / "go"
USER_BIN_DIR_ENV = "PITSTOP_K8S_BIN_DIR"
CACHE_DIR_ENV = "PITSTOP_CACHE_DIR"

Progress = Callable[[str], None]


class GoBuildTarget(BaseModel):
    """One `go build` invocation: packages of one tools module and the binaries they produce."""

    label: str
    module_dir: Path
    packages: list[str]
    binaries: list[str]
    ldflags: str
    env: dict[str, str] = {}
    """extra environment of `go build` (e.g. GOTOOLCHAIN for a module that needs a newer Go)"""


def _kube_minor(version: str) -> str:
    return version.lstrip("v").split(".")[1]


def build_targets() -> list[GoBuildTarget]:
    """The three Go builds that produce every sandbox binary."""
    kube_version_flags = (
        f"-X k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION}"
        " -X k8s.io/component-base/version.gitMajor=1"
        f" -X k8s.io/component-base/version.gitMinor={_kube_minor(KUBERNETES_VERSION)}"
        " -X k8s.io/component-base/version.gitTreeState=clean"
    )
    control_plane = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"]
    return [
        GoBuildTarget(
            label=f"k8s.io/kubernetes {KUBERNETES_VERSION}",
            module_dir=GO_TOOLS_DIR,
            packages=[f"k8s.io/kubernetes/cmd/{name}" for name in control_plane],
            binaries=control_plane,
            ldflags=f"-s -w {kube_version_flags}",
        ),
        GoBuildTarget(
            label=f"go.etcd.io/etcd/server/v3 {ETCD_VERSION}",
            module_dir=GO_TOOLS_DIR / "etcd",
            packages=["go.etcd.io/etcd/server/v3"],
            binaries=["etcd"],
            ldflags="-s -w",
        ),
        GoBuildTarget(
            label=f"sigs.k8s.io/kwok {KWOK_VERSION}",
            module_dir=GO_TOOLS_DIR / "kwok",
            packages=["sigs.k8s.io/kwok/cmd/kwok", "sigs.k8s.io/kwok/cmd/kwokctl"],
            binaries=["kwok", "kwokctl"],
            # kwokctl's default Kubernetes version follows the control plane we build.
            ldflags=f"-s -w -X sigs.k8s.io/kwok/pkg/consts.KubeVersion={KUBERNETES_VERSION.lstrip('v')}",
        ),
    ]


class KubeBinaries(BaseModel):
    """Paths of every binary a sandbox cluster needs, all inside `bin_dir`."""

    bin_dir: Path

    def path(self, name: str) -> Path:
        return self.bin_dir / name

    @property
    def kube_apiserver(self) -> Path:
        return self.path("kube-apiserver")

    @property
    def kube_controller_manager(self) -> Path:
        return self.path("kube-controller-manager")

    @property
    def kube_scheduler(self) -> Path:
        return self.path("kube-scheduler")

    @property
    def etcd(self) -> Path:
        return self.path("etcd")

    @property
    def kwok(self) -> Path:
        return self.path("kwok")

    @property
    def kwokctl(self) -> Path:
        return self.path("kwokctl")


class MissingBinariesError(RuntimeError):
    """A directory that should hold the sandbox binaries lacks some of them."""


class GoBuildError(RuntimeError):
    """`go build` of a tools module failed; the message carries go's own output."""


def required_binary_names() -> list[str]:
    return [name for target in build_targets() for name in target.binaries]


def missing_binaries(bin_dir: Path) -> list[str]:
    return [name for name in required_binary_names() if not os.access(bin_dir / name, os.X_OK)]


def binaries_key() -> str:
    """Cache key: the pinned versions plus a digest of the tools modules' go.mod/go.sum."""
    digest = hashlib.sha256()
    for target in build_targets():
        for name in ("go.mod", "go.sum"):
            digest.update((target.module_dir / name).read_bytes())
        digest.update(target.ldflags.encode())
    return (
        f"kubernetes-{KUBERNETES_VERSION}_etcd-{ETCD_VERSION}_kwok-{KWOK_VERSION}_{digest.hexdigest()[:10]}"
    )


def cache_dir() -> Path:
    configured = os.environ.get(CACHE_DIR_ENV)
    return Path(configured).expanduser() if configured else default_cache_dir()


def default_bin_dir(*, cache_root: Path | None = None) -> Path:
    return (cache_root or cache_dir()) / "k8s" / binaries_key() / "bin"


def locate_binaries(*, cache_root: Path | None = None) -> KubeBinaries:
    """The user's `PITSTOP_K8S_BIN_DIR` or the cache's bin dir; raises if any binary is missing."""
    user_dir = os.environ.get(USER_BIN_DIR_ENV)
    bin_dir = Path(user_dir).expanduser() if user_dir else default_bin_dir(cache_root=cache_root)
    missing = missing_binaries(bin_dir)
    if missing:
        origin = f"${USER_BIN_DIR_ENV}" if user_dir else "the build cache"
        hint = "" if user_dir else " (run `python -m pitstop.sandbox.binaries build`)"
        raise MissingBinariesError(f"{bin_dir} ({origin}) lacks {', '.join(missing)}{hint}")
    return KubeBinaries(bin_dir=bin_dir)


def ensure_binaries(*, cache_root: Path | None = None, progress: Progress = print) -> KubeBinaries:
    """Every sandbox binary, building what is missing. Idempotent; safe to run from several processes."""
    if os.environ.get(USER_BIN_DIR_ENV):
        return locate_binaries()
    bin_dir = default_bin_dir(cache_root=cache_root)
    if not missing_binaries(bin_dir):
        return KubeBinaries(bin_dir=bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(bin_dir.parent / "build.lock"):
        for target in build_targets():
            still_missing = set(missing_binaries(bin_dir))
            if not still_missing.intersection(target.binaries):
                progress(f"[binaries] {', '.join(target.binaries)}: present")
                continue
            go_build(target=target, bin_dir=bin_dir, progress=progress)
    missing = missing_binaries(bin_dir)
    if missing:
        raise MissingBinariesError(f"go build succeeded but {bin_dir} still lacks {', '.join(missing)}")
    return KubeBinaries(bin_dir=bin_dir)


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_PACKAGE_LINE = re.compile(r"^[A-Za-z0-9_.~+/-]+$")  # what `go build -v` prints per compiled package


def go_build(*, target: GoBuildTarget, bin_dir: Path, progress: Progress) -> None:
    """`go build` one target into `bin_dir` (through a partial directory, so a failed build leaves nothing)."""
    go = shutil.which("go")
    if go is None:
        raise GoBuildError("the `go` toolchain is not on PATH; it is needed to build the sandbox binaries")
    progress(
        f"[binaries] building {', '.join(target.binaries)} from {target.label} "
        f"(cold: many minutes on 2 cores; warm GOCACHE: about a minute)"
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="partial-", dir=bin_dir.parent) as partial:
        # One package: name the output file (go would call go.etcd.io/etcd/server/v3 "server");
        # several: go names each binary after its package directory.
        output = str(Path(partial) / target.binaries[0]) if len(target.packages) == 1 else partial + os.sep
        command = [go, "build", "-v", "-trimpath", "-ldflags", target.ldflags, "-o", output, *target.packages]
        process = subprocess.Popen(
            command,
            cwd=target.module_dir,
            env={**os.environ, **target.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        compiled, other_lines, last_report = 0, [], time.monotonic()
        for line in process.stdout or []:
            line = line.rstrip("\n")
            if _PACKAGE_LINE.match(line):
                compiled += 1
            else:
                other_lines.append(line)
            if time.monotonic() - last_report >= 15:
                last_report = time.monotonic()
                progress(f"[binaries]   {target.label}: {compiled} packages compiled, {_elapsed(started)}")
        returncode = process.wait()
        if returncode != 0:
            raise GoBuildError(
                f"`{shlex.join(command)}` in {target.module_dir} failed with exit code {returncode}:\n"
                + _error_excerpt(other_lines)
            )
        for name in target.binaries:
            os.replace(Path(partial) / name, bin_dir / name)
    progress(f"[binaries] built {', '.join(target.binaries)} in {_elapsed(started)}")


def _error_excerpt(lines: list[str], head: int = 25, tail: int = 50) -> str:
    """go's error text: its first lines (the cause) and last lines, without the middle of a long list."""
    if not lines:
        return "(go printed no error text)"
    if len(lines) <= head + tail:
        return "\n".join(lines)
    omitted = len(lines) - head - tail
    return "\n".join([*lines[:head], f"... ({omitted} more lines) ...", *lines[-tail:]])


def _elapsed(started: float) -> str:
    seconds = int(time.monotonic() - started)
    return f"{seconds // 60}m{seconds % 60:02d}s"


def module_source(module: str, target: GoBuildTarget) -> Path:
    """The downloaded source of `module`, a dependency of `target`'s tools module (`go list -m -json`)."""
    result = subprocess.run(
        ["go", "list", "-m", "-json", module], cwd=target.module_dir, capture_output=True, text=True,
        timeout=120, check=False, env={**os.environ, **target.env},
    )  # fmt: skip
    try:
        return Path(json.loads(result.stdout)["Dir"])
    except (ValueError, KeyError):
        raise GoBuildError(f"cannot locate the {module} module source: {result.stderr.strip()[-1000:]}") from None


def build_command(ensure: Callable[..., Path]) -> int:
    """A build entry point (`python -m ...`): build with progress on stderr, print the bin dir; 1 on a build error."""
    try:
        print(ensure(progress=lambda line: print(line, file=sys.stderr, flush=True)))
    except GoBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pitstop.sandbox.binaries", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["build", "locate"])
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            binaries = ensure_binaries(progress=lambda line: print(line, file=sys.stderr, flush=True))
        else:
            binaries = locate_binaries()
    except (GoBuildError, MissingBinariesError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(binaries.bin_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
