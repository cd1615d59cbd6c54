"""Keeping secrets out of results, logs and workflow history: masking of header values and URLs.

Secrets are referenced by environment-variable name in runbooks (`token_env: SLACK_TOKEN`) and resolved by
the worker at call time; these helpers make sure whatever is *reported* about a call carries no credential.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

MASK = "********"

_SENSITIVE_NAME = re.compile(
    r"(authorization|auth|token|secret|password|passwd|api[-_]?key|apikey|cookie|session|credential|signature|private)",
    re.IGNORECASE,
)
_SCHEME_PREFIX = re.compile(r"^(bearer|basic|token|digest|apikey|negotiate)\s+\S+", re.IGNORECASE)
_KNOWN_TOKEN = re.compile(r"^(xox[abprs]-|gh[pousr]_|glpat-|sk-|AKIA|eyJ)[A-Za-z0-9_\-.=]{6,}")
_OPAQUE = re.compile(r"^[A-Za-z0-9+/_\-=.]{24,}$")


def is_sensitive_header_name(name: str) -> bool:
    """Header names that carry credentials by convention (Authorization, X-Api-Key, Cookie, ...)."""
    return bool(_SENSITIVE_NAME.search(name))


def looks_like_credential(value: str) -> bool:
    """A value shaped like a credential: `Bearer ...`, a known token prefix, or a long opaque string."""
    value = value.strip()
    if _SCHEME_PREFIX.match(value) or _KNOWN_TOKEN.match(value):
        return True
    # long opaque strings that mix letters and digits (API keys, JWT parts, HMACs)
    return bool(_OPAQUE.match(value)) and any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def mask_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Header map safe to report: sensitive names and credential-like values become `********`."""
    return {
        name: (MASK if is_sensitive_header_name(name) or looks_like_credential(value) else value)
        for name, value in headers.items()
    }


def mask_url(url: str) -> str:
    """URL safe to report: user info and query values are masked; scheme, host and path are kept."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        query = "&".join(
            f"{pair.split('=', 1)[0]}={MASK}" if "=" in pair else pair for pair in query.split("&")
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
