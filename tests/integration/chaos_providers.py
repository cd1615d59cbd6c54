"""Python providers for chaos tests: they record each call in a file, so a test counts how often an action or a
rollback really ran (test only; allowed on test workers by `security.chaos_provider_modules`)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def record(path: str, label: str) -> str:
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.write(f"{label} {os.getpid()}\n")
    return label


def calls(path: str, label: str) -> int:
    file = Path(path)
    return sum(1 for line in file.read_text().splitlines() if line.split(" ")[0] == label) if file.exists() else 0


def record_and_sleep(path: str, label: str, seconds: float) -> str:
    record(path, label)
    time.sleep(seconds)
    return label


def fail_first(path: str, label: str, failures: int) -> str:
    """Fails on its first `failures` calls, then succeeds."""
    record(path, label)
    if calls(path, label) <= failures:
        raise RuntimeError(f"{label}: failing on purpose (call {calls(path, label)} of the first {failures})")
    return label


def sleep_on_first_call(path: str, label: str, seconds: float) -> str:
    """Sleeps `seconds` on its first call only (a rollback a dead worker interrupts, then runs to its end)."""
    record(path, label)
    if calls(path, label) == 1:
        time.sleep(seconds)
    return label
