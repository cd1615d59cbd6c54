"""What a runbook author can reach through a worker: which environment variables steps may read (`header_env`,
`url_env`, `token_env`), which hosts they may call (`http.call`, `notify.*`, escalations), whether the test-only
`debug.*` step types exist. Pure decisions over `AuthorReach`, built from the settings (`security.*`,
`worker.enable_debug_steps`).

Validation (`pitstop.runbook.validation`) refuses a runbook naming a variable or host outside the reach; the
worker's activities check again at call time what validation cannot see (a URL computed by an expression or read
from an environment variable). Environment variables that configure pitstop itself (`PITSTOP_TEMPORAL__API_KEY`,
`PITSTOP_WEBHOOK__TOKEN`, ...) are never readable, whatever the allowlist says.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from pitstop.config import Settings

CONFIG_ENV_PREFIX = "PITSTOP_"


class AuthorReach(BaseModel):
    """The limits a worker (or the CLI, validating before a start) puts on runbook authors."""

    model_config = ConfigDict(frozen=True)

    env_allowlist: list[str] = Field(description="glob patterns of env var names steps may read")
    allowed_hosts: list[str] = Field(description="host or host:port glob patterns steps may call; empty = any host")
    debug_steps: bool = Field(False, description="the test-only `debug.*` step types exist")

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthorReach:
        return cls(
            env_allowlist=list(settings.security.env_allowlist),
            allowed_hosts=list(settings.security.allowed_hosts),
            debug_steps=settings.worker.enable_debug_steps,
        )

    def env_problem(self, name: str) -> str | None:
        """Why a step may not read env var `name`, or None when it may."""
        if configures_pitstop(name):
            return f"environment variable {name} configures pitstop itself and is never readable by a runbook"
        if any(fnmatchcase(name, pattern) for pattern in self.env_allowlist):
            return None
        return (f"environment variable {name} is not in the worker's `security.env_allowlist` "
                f"({', '.join(self.env_allowlist) or 'empty'})")

    def url_problem(self, url: str) -> str | None:
        """Why a step may not call `url`, or None when it may (any host when `allowed_hosts` is empty)."""
        if not self.allowed_hosts:
            return None
        try:
            parts = urlsplit(url)
            host, port = (parts.hostname or "").lower(), parts.port
        except ValueError:
            return "not a valid URL"
        if not host:
            return "the URL names no host"
        port = port or {"http": 80, "https": 443}.get(parts.scheme.lower())
        if any(_host_matches(host, port, pattern) for pattern in self.allowed_hosts):
            return None
        return f"host {host} is not in the worker's `security.allowed_hosts` ({', '.join(self.allowed_hosts)})"

    def step_type_problem(self, name: str, *, debug: bool) -> str | None:
        """Why step type `name` is refused here, or None."""
        if debug and not self.debug_steps:
            return (f"step type {name!r} is a test-only debug step: it exists only on workers with "
                    "`worker.enable_debug_steps: true` (test workers)")
        return None


def configures_pitstop(name: str) -> bool:
    """`PITSTOP_CONFIG` and the env vars of `Settings` fields (`PITSTOP_<FIELD>`, `PITSTOP_<FIELD>__...`)."""
    upper = name.upper()
    if not upper.startswith(CONFIG_ENV_PREFIX):
        return False
    field = upper[len(CONFIG_ENV_PREFIX):].split("__", 1)[0].lower()
    return field == "config" or field in Settings.model_fields


def _host_matches(host: str, port: int | None, pattern: str) -> bool:
    pattern = pattern.strip().lower()
    pattern_host, _, pattern_port = pattern.rpartition(":") if _has_port(pattern) else (pattern, "", "")
    if pattern_port and str(port) != pattern_port:
        return False
    return fnmatchcase(host, pattern_host.strip("[]"))


def _has_port(pattern: str) -> bool:
    """`host:port` or `[v6]:port`, not a bare IPv6 address."""
    head, sep, tail = pattern.rpartition(":")
    return bool(sep) and tail.isdigit() and (head.endswith("]") or ":" not in head)
