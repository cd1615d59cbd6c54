"""Settings for CLI commands: a bad configuration file or value becomes a `CliError` naming the field.

Every `cli_*` module imports `load_settings` from here (never from `workers.cli`, which imports them:
the command modules depend on this one, the entry point on them, and nothing points back).
"""

from __future__ import annotations

from pydantic import ValidationError

from pitstop.config import ConfigFileError, Settings

from .errors import EXIT_USAGE, CliError


def load_settings() -> Settings:
    try:
        return Settings()
    except ConfigFileError as exc:
        raise CliError(str(exc), exit_code=EXIT_USAGE) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CliError(f"invalid configuration at {where}: {first['msg']}", exit_code=EXIT_USAGE) from exc
