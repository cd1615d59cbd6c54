"""Turning an API request's bearer credential into a verified `Identity` (used by workers/api.py).

- An OIDC ID token (a JWT) is verified by `pitstop.identity.oidc` against the issuer's JWKS, fetched here over
  HTTP (discovery `<issuer>/.well-known/openid-configuration` unless `identity.oidc.jwks_url` is set), cached for
  `jwks_cache_seconds`, each request bounded by `fetch_timeout_seconds`. A token naming a key id the cache does
  not hold triggers one refetch (key rotation), at most once every `MIN_REFETCH_SECONDS`.
- Anything else is looked up in the local token file (`identity.tokens_file`, default
  `<state_dir>/api-tokens.yaml`), re-read when its modification time changes.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import jwt

from pitstop.access import Identity
from pitstop.config import OidcSettings, Settings
from pitstop.identity import CredentialRefused
from pitstop.identity.oidc import OidcRules, token_key_id, verify_id_token
from pitstop.identity.tokens import TOKEN_PREFIX, TokenFile

MIN_REFETCH_SECONDS = 30.0


def tokens_path(settings: Settings) -> Path:
    return settings.identity.tokens_file or settings.state_dir / "api-tokens.yaml"


def load_token_file(path: Path) -> TokenFile:
    if not path.exists():
        return TokenFile()
    return TokenFile.parse(path.read_text(), source=str(path))


def add_token(path: Path, user: str, *, groups: list[str], label: str = "") -> str:
    """Add a token for `user` to the file (created 0600), return the token (shown once, stored only hashed)."""
    updated, token = load_token_file(path).with_new_token(user, groups=groups, label=label,
                                                          now=datetime.now(timezone.utc))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(updated.dumps())
    os.replace(temporary, path)
    return token


LOCAL_OPERATOR_GROUP = "sre-lead"  # the shipped policy's every-action group (runbooks/policy.yaml)


def ensure_local_operator(settings: Settings, cli_token: Path) -> str | None:
    """The embedded default (`pitstop up`) on first start: a token for the OS user in group `sre-lead`, saved to
    `cli_token` (0600) so the CLI works at once. Whoever can read the state dir owns the embedded Temporal's
    database anyway; other people get their own token (`pitstop tokens add`). Returns what it did, or None."""
    import getpass

    if cli_token.exists():
        return None
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name (container without passwd entry)
        user = "local-operator"
    token = add_token(tokens_path(settings), user, groups=[LOCAL_OPERATOR_GROUP], label="pitstop up")
    cli_token.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(cli_token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return f"API credential for {user} (group {LOCAL_OPERATOR_GROUP}) created in {cli_token}"


def start_claim_key(settings: Settings) -> bytes:
    """The secret that signs start claims (pitstop/identity/start_claims.py), created once (0600) if absent."""
    from pitstop.identity.start_claims import start_claim_key_path

    path = start_claim_key_path(settings)
    if path.exists() and path.read_bytes().strip():
        return path.read_bytes().strip()
    import secrets

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    return path.read_bytes().strip()


class JwksCache:
    """The issuer's signing keys, fetched over HTTP and kept for `jwks_cache_seconds`."""

    def __init__(self, oidc: OidcSettings, *, http: httpx.AsyncClient | None = None) -> None:
        self.oidc = oidc
        self.http = http or httpx.AsyncClient(timeout=oidc.fetch_timeout_seconds, follow_redirects=False)
        self._keys: jwt.PyJWKSet | None = None
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def keys(self, *, kid: str | None) -> jwt.PyJWKSet:
        """Cached keys; fetched again when stale, or when `kid` is unknown (rotation) and the last fetch is old."""
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            known = self._keys is not None and (kid is None or any(k.key_id == kid for k in self._keys.keys))
            if self._keys is None or age > self.oidc.jwks_cache_seconds or (not known and age > MIN_REFETCH_SECONDS):
                self._keys = await self._fetch()
                self._fetched_at = time.monotonic()
            return self._keys

    async def _fetch(self) -> jwt.PyJWKSet:
        url = self.oidc.jwks_url or await self._discover()
        try:
            answer = await self.http.get(url, timeout=self.oidc.fetch_timeout_seconds)
            answer.raise_for_status()
            return jwt.PyJWKSet.from_dict(answer.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            raise CredentialRefused(f"cannot fetch the issuer's keys from {url}: {type(exc).__name__}: {exc}") from None

    async def _discover(self) -> str:
        url = self.oidc.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            answer = await self.http.get(url, timeout=self.oidc.fetch_timeout_seconds)
            answer.raise_for_status()
            return str(answer.json()["jwks_uri"])
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise CredentialRefused(f"cannot read the issuer's discovery document {url}: {exc}") from None

    async def aclose(self) -> None:
        await self.http.aclose()


class Authenticator:
    """A bearer credential -> Identity, or CredentialRefused with the reason."""

    def __init__(self, *, tokens_file: Path, oidc: OidcSettings | None, jwks: JwksCache | None = None) -> None:
        self.tokens_file = tokens_file
        self.rules = OidcRules(issuer=oidc.issuer, audience=oidc.audience, subject_claim=oidc.subject_claim,
                               groups_claim=oidc.groups_claim) if oidc else None
        self.jwks = jwks or (JwksCache(oidc) if oidc else None)
        self._tokens: tuple[float, TokenFile] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        return cls(tokens_file=tokens_path(settings), oidc=settings.identity.oidc)

    async def identify(self, authorization: str | None) -> Identity:
        if not authorization:
            raise CredentialRefused("no credential: send `Authorization: Bearer <token>`")
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise CredentialRefused("use `Authorization: Bearer <token>`")
        if credential.startswith(TOKEN_PREFIX) or credential.count(".") != 2:
            return self._token_file().identity_for(credential)
        if self.rules is None or self.jwks is None:
            raise CredentialRefused("OIDC tokens are not accepted here (identity.oidc is not configured)")
        keys = await self.jwks.keys(kid=token_key_id(credential))
        return verify_id_token(credential, keys=keys, rules=self.rules)

    def _token_file(self) -> TokenFile:
        try:
            mtime = self.tokens_file.stat().st_mtime
        except FileNotFoundError:
            raise CredentialRefused(f"unknown token (no token file at {self.tokens_file}; "
                                    "`pitstop tokens add USER` creates one)") from None
        if self._tokens is None or self._tokens[0] != mtime:
            try:
                self._tokens = (mtime, load_token_file(self.tokens_file))
            except ValueError as exc:
                raise CredentialRefused(f"the token file is invalid: {exc}") from None
        return self._tokens[1]

    async def aclose(self) -> None:
        if self.jwks is not None:
            await self.jwks.aclose()
