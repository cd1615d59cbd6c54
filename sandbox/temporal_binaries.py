"""Builds (or locates) the real Temporal server and its SQL schema tool from Go modules.

`go.temporal.io/server` `cmd/server` and `cmd/tools/sql`, pinned in the tools module `sandbox/go/temporal/`
(go.mod/go.sum committed), built into `$PITSTOP_CACHE_DIR/temporal/<key>/bin` beside the sandbox's Kubernetes
binaries (cold: about 6 minutes of 2 cores; never rebuilt while go.mod/go.sum are unchanged). v1.32 needs a newer Go
than Debian's: the build sets GOTOOLCHAIN, and the go command fetches that toolchain from the module proxy. The
server's config templates and SQL schemas ship in the module source; `temporal_module_dir` finds them.

    python -m pitstop.sandbox.temporal_binaries build    # prints the bin dir
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from pitstop.sandbox.binaries import (GO_TOOLS_DIR, GoBuildTarget, Progress, build_command, cache_dir, exclusive_lock,
                                      go_build, module_source)

TEMPORAL_SERVER_VERSION = "v1.32.2"
TEMPORAL_GOTOOLCHAIN = "go1.27.3"
MODULE_DIR = GO_TOOLS_DIR / "temporal"
BINARIES = ("temporal-server", "temporal-sql-tool")


def build_target() -> GoBuildTarget:
    return GoBuildTarget(
        label=f"go.temporal.io/server {TEMPORAL_SERVER_VERSION}",
        module_dir=MODULE_DIR,
        packages=["go.temporal.io/server/cmd/server", "go.temporal.io/server/cmd/tools/sql"],
        binaries=["server", "sql"],
        ldflags="-s -w",
        env={"GOTOOLCHAIN": TEMPORAL_GOTOOLCHAIN, "GOFLAGS": "-mod=mod"},
    )


def bin_dir() -> Path:
    digest = hashlib.sha256(b"".join((MODULE_DIR / name).read_bytes() for name in ("go.mod", "go.sum")))
    return cache_dir() / "temporal" / f"temporal-{TEMPORAL_SERVER_VERSION}_{digest.hexdigest()[:10]}" / "bin"


def ensure_temporal_binaries(progress: Progress = print) -> Path:
    """The bin dir holding `temporal-server` and `temporal-sql-tool`, building them if absent."""
    target_dir = bin_dir()
    if all(os.access(target_dir / name, os.X_OK) for name in BINARIES):
        return target_dir
    target_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(target_dir.parent / "build.lock"):
        if not all(os.access(target_dir / name, os.X_OK) for name in BINARIES):
            go_build(target=build_target(), bin_dir=target_dir, progress=progress)
            os.replace(target_dir / "server", target_dir / "temporal-server")
            os.replace(target_dir / "sql", target_dir / "temporal-sql-tool")
    return target_dir


def temporal_module_dir() -> Path:
    """The downloaded `go.temporal.io/server` source (config templates, schema/postgresql/v12/...)."""
    return module_source("go.temporal.io/server", build_target())


def main(argv: list[str] | None = None) -> int:
    return build_command(ensure_temporal_binaries)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
