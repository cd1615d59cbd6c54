"""Verifying who calls the pitstop API: OIDC ID tokens (`oidc.py`) and the local token file (`tokens.py`).

Both turn a bearer credential into a `pitstop.access.Identity` or refuse it with a `CredentialRefused` naming why;
fetching the issuer's keys (JWKS) over HTTP is the API process's job (workers/identity.py).
"""

from __future__ import annotations


class CredentialRefused(Exception):
    """The credential is missing, malformed, expired, wrongly signed or unknown; `reason` says which (no secret)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
