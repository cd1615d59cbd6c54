"""The CLI's side of the pitstop API (workers/api.py): every operator action is an authenticated HTTP call to
the API in the webhook process, never a direct Temporal call, so the identity recorded is the one the credential
proves, not one typed on the command line.

The credential, first found wins: `--token-file FILE`; `identity.token` (PITSTOP_IDENTITY__TOKEN or the config
file); the file `<state_dir>/cli.token` (`pitstop tokens add USER --save` writes it). An OIDC ID token works
the same way (put it in the file or the variable). The API's address: `identity.api_url`, default
`http://<webhook.listen>`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional
from urllib.parse import quote

import httpx
import typer

from pitstop.config import Settings

from .errors import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_UNAVAILABLE, EXIT_USAGE, CliError

TokenFileOption = Annotated[Optional[Path], typer.Option(
    "--token-file", help="File holding your API credential (a pitstop token or an OIDC ID token); default "
                         "$PITSTOP_IDENTITY__TOKEN, else <state_dir>/cli.token.")]
IgnoredAsOption = Annotated[Optional[str], typer.Option(
    "--as", hidden=True, help="Ignored: the identity is the one your credential proves.")]
REQUEST_TIMEOUT_SECONDS = 120.0  # a rollback waits until traffic is back
EXIT_FOR_STATUS = {400: EXIT_USAGE, 401: EXIT_USAGE, 403: EXIT_USAGE, 404: EXIT_NOT_FOUND, 409: EXIT_USAGE,
                   413: EXIT_USAGE, 422: EXIT_USAGE}


def cli_token_path(settings: Settings) -> Path:
    return settings.state_dir / "cli.token"


def warn_ignored_as(claimed: str | None) -> None:
    if claimed:
        print(f"warning: --as {claimed} is ignored: the pitstop API acts as the identity your credential proves "
              "(see `pitstop whoami`)", file=sys.stderr, flush=True)


def credential(settings: Settings, token_file: Path | None) -> str:
    if token_file is not None:
        try:
            value = token_file.read_text().strip()
        except OSError as exc:
            raise CliError(f"cannot read --token-file {token_file}: {exc.strerror}", exit_code=EXIT_USAGE) from None
        if not value:
            raise CliError(f"--token-file {token_file} is empty", exit_code=EXIT_USAGE)
        return value
    if settings.identity.token is not None and settings.identity.token.get_secret_value().strip():
        return settings.identity.token.get_secret_value().strip()
    default = cli_token_path(settings)
    if default.exists() and default.read_text().strip():
        return default.read_text().strip()
    raise CliError("no API credential: pass --token-file, set PITSTOP_IDENTITY__TOKEN, or create one with "
                   f"`pitstop tokens add USER --group GROUP --save` (writes {default})", exit_code=EXIT_USAGE)


def api_url(settings: Settings) -> str:
    if settings.identity.api_url:
        return settings.identity.api_url.rstrip("/")
    host, _, port = settings.webhook.listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"


def call_api(settings: Settings, token_file: Path | None, method: str, path: list[str],
             body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One API call; its JSON answer, or CliError with the API's reason (403: the policy's, 401: why the
    credential was refused)."""
    url = api_url(settings) + "/api/v1/" + "/".join(quote(part, safe="") for part in path)
    headers = {"Authorization": f"Bearer {credential(settings, token_file)}"}
    try:
        answer = httpx.request(method, url, json=body, headers=headers, timeout=REQUEST_TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach the pitstop API at {api_url(settings)} ({type(exc).__name__}: {exc}); "
                       "is `pitstop up` or `pitstop webhook` running?", exit_code=EXIT_UNAVAILABLE) from None
    try:
        data = answer.json()
    except ValueError:
        data = {"error": answer.text[:200]}
    if answer.status_code != 200:
        reason = data.get("error") if isinstance(data, dict) else str(data)
        raise CliError(f"refused by the pitstop API ({answer.status_code}): {reason}",
                       exit_code=EXIT_FOR_STATUS.get(answer.status_code, EXIT_FAILED))
    return data if isinstance(data, dict) else {"result": data}
