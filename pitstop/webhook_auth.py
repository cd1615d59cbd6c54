"""Who sent an alert-webhook request: pure decisions over its header values (workers/webhook.py does the I/O).

Accepted credentials, all compared in constant time:
- `Authorization: Bearer <token>` (Alertmanager's `http_config.authorization`): identity `bearer`;
- `Authorization: Basic <base64 user:password>` when `webhook.basic_auth` is configured (Alertmanager's
  `http_config.basic_auth`): identity `basic:<user>`;
- an HMAC signature, for senders that can sign (Alertmanager cannot): `X-Pitstop-Timestamp: <unix seconds>` and
  `X-Pitstop-Signature: sha256=<lowercase hex HMAC-SHA256 keyed with the token of "<timestamp>.<body>">`;
  identity `hmac`. A timestamp further than the window (default 300 s) from now is refused, and so is a
  signature already accepted within the window (`ReplayGuard`: a replay).

Bearer and basic credentials are decided from the headers alone (`check_headers`), so the webhook refuses an
unauthenticated request before reading its body. A signature can only be checked against the body: the
headers decide whether it is worth reading (well-formed, timestamp in the window), then `signature_matches`.

Replay protection is per process: each webhook replica remembers the signatures it accepted. A signed request
replayed to another replica within the window passes there; what it can do is bounded by alerts being
idempotent: the incident is `incident-<fingerprint>-<startsAt>` (signal-with-start, a closed incident is
never reopened), so a replay re-delivers a notification the sender already sent minutes ago and at most adds
to that incident's repeat count.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
from dataclasses import dataclass
from typing import Literal

SIGNATURE_PREFIX = b"sha256="
MAX_TIMESTAMP_DIGITS = 12  # unix seconds until the year 33658
MAX_REMEMBERED_SIGNATURES = 100_000


@dataclass(frozen=True)
class Authenticated:
    identity: str


@dataclass(frozen=True)
class SignatureToCheck:
    """Well-formed signature headers with a timestamp in the window: the body decides."""

    timestamp: int
    signature: bytes


@dataclass(frozen=True)
class Unauthenticated:
    reason: str


HeaderVerdict = Authenticated | SignatureToCheck | Unauthenticated


@dataclass(frozen=True)
class WebhookCredentials:
    """What the webhook accepts: the token (bearer and HMAC key) and optional basic-auth credentials."""

    token: bytes
    basic_username: bytes | None = None
    basic_password: bytes | None = None


def sign(key: bytes, timestamp: int, body: bytes) -> bytes:
    """The `X-Pitstop-Signature` value of `body` sent at `timestamp` (unix seconds)."""
    return SIGNATURE_PREFIX + hmac.new(key, b"%d." % timestamp + body, hashlib.sha256).hexdigest().encode()


def check_headers(*, authorization: bytes | None, timestamp: bytes | None, signature: bytes | None,
                  credentials: WebhookCredentials, now: float, window_seconds: float) -> HeaderVerdict:
    """The decision the headers allow before the body is read. A valid `Authorization` wins; otherwise
    signature headers are checked for form and freshness; otherwise the request is unauthenticated."""
    if authorization is not None:
        identity = _authorization_identity(authorization, credentials)
        if identity is not None:
            return Authenticated(identity)
    if signature is None and timestamp is None:
        return Unauthenticated("credentials missing or wrong" if authorization is not None
                               else "no credentials: send a bearer token, basic auth or an HMAC signature")
    if signature is None or timestamp is None:
        return Unauthenticated("an HMAC signature needs both X-Pitstop-Timestamp and X-Pitstop-Signature")
    sent_at = parse_timestamp(timestamp)
    if sent_at is None:
        return Unauthenticated("X-Pitstop-Timestamp is not unix seconds")
    if abs(now - sent_at) > window_seconds:
        return Unauthenticated(f"X-Pitstop-Timestamp is more than {window_seconds:.0f} s from the receiver's clock")
    if not _well_formed_signature(signature):
        return Unauthenticated("X-Pitstop-Signature is not sha256=<64 lowercase hex digits>")
    return SignatureToCheck(timestamp=sent_at, signature=signature)


def signature_matches(key: bytes, claim: SignatureToCheck, body: bytes) -> bool:
    return hmac.compare_digest(claim.signature, sign(key, claim.timestamp, body))


def parse_timestamp(value: bytes) -> int | None:
    value = value.strip()
    if not value or len(value) > MAX_TIMESTAMP_DIGITS or not value.isdigit() or not value.isascii():
        return None
    return int(value)


def _well_formed_signature(value: bytes) -> bool:
    digest = value[len(SIGNATURE_PREFIX):]
    return (value.startswith(SIGNATURE_PREFIX) and len(digest) == 64
            and all(c in b"0123456789abcdef" for c in digest))


def _authorization_identity(value: bytes, credentials: WebhookCredentials) -> str | None:
    scheme, _, rest = value.strip().partition(b" ")
    scheme = scheme.lower()
    if scheme == b"bearer":
        return "bearer" if hmac.compare_digest(rest.strip(), credentials.token) else None
    if scheme == b"basic" and credentials.basic_username is not None and credentials.basic_password is not None:
        try:
            decoded = base64.b64decode(rest.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        username, colon, password = decoded.partition(b":")
        # both compared, whatever the first gives: the time taken does not say which part was wrong
        user_ok = hmac.compare_digest(username, credentials.basic_username)
        password_ok = hmac.compare_digest(password, credentials.basic_password)
        if colon and user_ok and password_ok:
            return "basic:" + credentials.basic_username.decode(errors="replace")
    return None


Remembered = Literal["first use", "replay", "full"]


class ReplayGuard:
    """The signatures accepted within the window, each kept until its timestamp leaves the window (after which
    `check_headers` refuses it anyway). Bounded: when `max_entries` unexpired signatures are held, a new one
    is refused as `full` (only holders of the key can fill it; the webhook answers 503 with Retry-After)
    rather than forgetting one early, which would let it be replayed."""

    def __init__(self, *, window_seconds: float, max_entries: int = MAX_REMEMBERED_SIGNATURES) -> None:
        self.window_seconds = window_seconds
        self.max_entries = max_entries
        self._expiry: dict[bytes, float] = {}
        self._by_expiry: list[tuple[float, bytes]] = []

    def remember(self, claim: SignatureToCheck, *, now: float) -> Remembered:
        self._forget_expired(now)
        if claim.signature in self._expiry:
            return "replay"
        if len(self._expiry) >= self.max_entries:
            return "full"
        expires = claim.timestamp + self.window_seconds
        self._expiry[claim.signature] = expires
        heapq.heappush(self._by_expiry, (expires, claim.signature))
        return "first use"

    def forget(self, claim: SignatureToCheck) -> None:
        """Let the sender retry the same signed request (its handling failed on the receiver's side)."""
        self._expiry.pop(claim.signature, None)  # its heap entry is dropped when it expires

    def seconds_until_room(self, *, now: float) -> float:
        return max(0.0, self._by_expiry[0][0] - now) if self._by_expiry else 0.0

    def _forget_expired(self, now: float) -> None:
        while self._by_expiry and self._by_expiry[0][0] < now:
            expires, signature = heapq.heappop(self._by_expiry)
            if self._expiry.get(signature) == expires:
                del self._expiry[signature]

    def __len__(self) -> int:
        return len(self._expiry)
