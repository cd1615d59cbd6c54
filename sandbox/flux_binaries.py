"""Builds (or locates) Flux's source-controller and kustomize-controller, the sandbox's real GitOps engine.

Both come from the tools module `sandbox/go/flux/` (go.mod/go.sum committed; v1.9.6, the newest release whose
dependencies the Go module proxy serves and that builds with Debian's Go — see docs/gitops.md), built into
`$PITSTOP_CACHE_DIR/flux/<version+digest>/bin` beside the Kubernetes binaries. Cold: about 13 minutes of 2 cores
(printed at the end of the build); never rebuilt while go.mod/go.sum are unchanged. The controllers' CRDs ship
in the module sources (`config/crd/bases/`); `crd_files` finds them.

    python -m pitstop.sandbox.flux_binaries build    # prints the bin dir (and the build time when it built)
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

from pitstop.sandbox.binaries import (GO_TOOLS_DIR, GoBuildTarget, Progress, build_command, cache_dir, exclusive_lock,
                                      go_build, module_source)

FLUX_CONTROLLERS_VERSION = "v1.9.6"
MODULE_DIR = GO_TOOLS_DIR / "flux"
SOURCE_CONTROLLER = "github.com/fluxcd/source-controller"
KUSTOMIZE_CONTROLLER = "github.com/fluxcd/kustomize-controller"
BINARIES = ("source-controller", "kustomize-controller")


def build_target() -> GoBuildTarget:
    return GoBuildTarget(
        label=f"fluxcd source-controller + kustomize-controller {FLUX_CONTROLLERS_VERSION}",
        module_dir=MODULE_DIR,
        packages=[SOURCE_CONTROLLER, KUSTOMIZE_CONTROLLER],
        binaries=list(BINARIES),
        ldflags="-s -w",
        env={"GOFLAGS": "-mod=mod"},
    )


def bin_dir() -> Path:
    digest = hashlib.sha256(b"".join((MODULE_DIR / name).read_bytes() for name in ("go.mod", "go.sum")))
    return cache_dir() / "flux" / f"flux-{FLUX_CONTROLLERS_VERSION}_{digest.hexdigest()[:10]}" / "bin"


def _present(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in BINARIES)


def ensure_flux_binaries(progress: Progress = print) -> Path:
    """The bin dir holding `source-controller` and `kustomize-controller`, building them if absent."""
    target_dir = bin_dir()
    if _present(target_dir):
        return target_dir
    target_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(target_dir.parent / "build.lock"):
        if not _present(target_dir):
            started = time.monotonic()
            go_build(target=build_target(), bin_dir=target_dir, progress=progress)
            progress(f"[binaries] Flux controllers build time: {time.monotonic() - started:.0f} s (cold on a fresh machine)")
    return target_dir


def module_source_dir(module: str) -> Path:
    """The downloaded source of one controller module (for its CRDs)."""
    return module_source(module, build_target())


def crd_files() -> list[Path]:
    """The CustomResourceDefinitions both controllers serve (GitRepository & co., Kustomization)."""
    files: list[Path] = []
    for module in (SOURCE_CONTROLLER, KUSTOMIZE_CONTROLLER):
        files.extend(sorted((module_source_dir(module) / "config" / "crd" / "bases").glob("*.yaml")))
    return files


def main(argv: list[str] | None = None) -> int:
    return build_command(ensure_flux_binaries)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
