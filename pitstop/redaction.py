"""Keeping secrets out of results, logs and workflow history: masking of header values, URLs and free text
(a response excerpt).

Secrets are referenced by environment-variable name in runbooks (`token_env: SLACK_TOKEN`) and resolved by
the worker at call time; these helpers make sure whatever is *reported* about a call carries no credential.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

MASK = "********"

_SENSITIVE_NAME = re.compile(
    r"(authorization|auth|token|secret|password|passwd|api[-_]?key|apikey|cookie|session|credential|signature|private)",
    re.IGNORECASE,
)
_SCHEME_PREFIX = re.compile(r"^(bearer|basic|token|digest|apikey|negotiate)\s+\S+", re.IGNORECASE)
_KNOWN_TOKEN = re.compile(r"^(xox[abprs]-|gh[pousr]_|glpat-|sk-|AKIA|eyJ)[A-Za-z0-9_\-.=]{6,}")
_OPAQUE = re.compile(r"^[A-Za-z0-9+/_\-=.]{24,}$")
_SCHEME_IN_TEXT = re.compile(r"\b(bearer|basic|token|digest|apikey|negotiate)(\s+)[A-Za-z0-9+/_\-=.~]{6,}", re.IGNORECASE)
_KNOWN_TOKEN_IN_TEXT = re.compile(r"\b(xox[abprs]-|gh[pousr]_|glpat-|sk-|AKIA|eyJ)[A-Za-z0-9_\-.=]{6,}")
_SENSITIVE_PAIR = re.compile(  # "api_key": "v", password=v, X-Auth-Token: v
    r"(\b[\w\-]*(?:" + _SENSITIVE_NAME.pattern[1:-1] + r")[\w\-]*\b[\"']?\s*[:=]\s*[\"']?)"
    r"(?!\*{8})([^\s\"',&;}]+)",
    re.IGNORECASE,
)


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


def redact_text(text: str, *, secrets: Iterable[str] = ()) -> str:
    """Free text safe to report (e.g. a response excerpt that may echo the request): the given secret values,
    `Bearer ...`-style credentials, known token shapes and values of sensitive keys (`"token": ...`) are masked."""
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _SCHEME_IN_TEXT.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = _KNOWN_TOKEN_IN_TEXT.sub(MASK, text)
    return _SENSITIVE_PAIR.sub(lambda m: f"{m.group(1)}{MASK}", text)
