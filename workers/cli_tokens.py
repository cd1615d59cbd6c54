"""`pitstop tokens add USER --group G` and `pitstop whoami`: the local token file of the embedded default
(workers/identity.py; tokens stored only as SHA-256) and the identity the API sees for your credential."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from .api_client import TokenFileOption, call_api, cli_token_path
from .cli_settings import load_settings
from .errors import EXIT_USAGE, CliError

tokens_app = typer.Typer(help="API tokens of the local token file (identity.tokens_file).", no_args_is_help=True)


@tokens_app.command("add")
def add(
    user: Annotated[str, typer.Argument(help="The user the token identifies (what the policy and histories show).")],
    groups: Annotated[Optional[list[str]], typer.Option("--group", "-g", help="A group of the user (repeatable).")] = None,
    label: Annotated[str, typer.Option("--label", help="Where the token is used (kept beside its hash).")] = "",
    file: Annotated[Optional[Path], typer.Option("--file", help="Token file; default identity.tokens_file.")] = None,
    save: Annotated[bool, typer.Option("--save", help="Also write the token to <state_dir>/cli.token (0600), the "
                                                      "CLI's default credential.")] = False,
) -> None:
    """Create a token for USER (with --group groups) and print it ONCE; only its SHA-256 is stored."""
    from .identity import add_token, tokens_path

    settings = load_settings()
    path = file or tokens_path(settings)
    try:
        token = add_token(path, user, groups=list(groups or []), label=label)
    except ValueError as exc:
        raise CliError(str(exc), exit_code=EXIT_USAGE) from None
    print(f"added a token for {user} (groups: {', '.join(sorted(groups or [])) or 'none'}) to {path}")
    if save:
        target = cli_token_path(settings)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
        print(f"saved to {target}: the CLI uses it by default")
    print(f"token (shown once, keep it secret): {token}")


def whoami(token_file: TokenFileOption = None) -> None:
    """The identity the pitstop API verified from your credential (user, groups, method)."""
    answer = call_api(load_settings(), token_file, "GET", ["whoami"])
    print(f"{answer['subject']} ({answer['method']}) groups: {', '.join(answer['groups']) or 'none'}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `pitstop` CLI."""
    app.add_typer(tokens_app, name="tokens")
    app.command()(whoami)
