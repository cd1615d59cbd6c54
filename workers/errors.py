"""The one error type the CLI turns into a single clear line and a non-zero exit code."""

from __future__ import annotations


class CliError(Exception):
    """A user-facing failure: `message` is printed as one line, the process exits with `exit_code`."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


# Exit codes (documented in `pitstop --help`):
EXIT_FAILED = 1  # the command ran and the thing it did failed (e.g. the runbook failed)
EXIT_USAGE = 2  # bad arguments / invalid input
EXIT_UNAVAILABLE = 3  # Temporal or another dependency unreachable
EXIT_NOT_FOUND = 4  # unknown runbook / workflow id
