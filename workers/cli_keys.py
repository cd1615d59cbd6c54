"""`pitstop keys rotate`: the key ring that encrypts Temporal payloads (`security.payload_keys_file`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import EXIT_USAGE, CliError

keys_app = typer.Typer(help="Payload encryption keys (AES-256-GCM key ring; workers/payload_codec.py).", no_args_is_help=True)


@keys_app.command("rotate")
def rotate(
    file: Annotated[Optional[Path], typer.Option("--file", help="Key ring file; default security.payload_keys_file.")] = None,
) -> None:
    """Add a new random key and make it the one that encrypts (creating the file, mode 0600, if absent). Older keys
    stay in the ring and still decrypt. Restart workers, webhooks and `pitstop up` to encrypt with the new key."""
    from .cli_settings import load_settings
    from .payload_codec import KeyRingError, rotate_key_ring

    path = file or load_settings().security.payload_keys_file
    if path is None:
        raise CliError("no key ring file: pass --file or set security.payload_keys_file", exit_code=EXIT_USAGE)
    try:
        key_id = rotate_key_ring(path)
    except KeyRingError as exc:
        raise CliError(str(exc), exit_code=EXIT_USAGE) from None
    print(f"new active key {key_id} in {path}")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
