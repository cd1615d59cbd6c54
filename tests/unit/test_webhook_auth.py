"""The alert webhook's credential decisions (pitstop/webhook_auth.py) and per-client rate limits
(pitstop/client_rate_limit.py, pitstop/token_bucket.py `take`), as pure functions with an injected clock."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from pitstop.client_rate_limit import ClientRateLimits
from pitstop.token_bucket import TokenBucket
from pitstop.webhook_auth import (
    Authenticated, HeaderVerdict, ReplayGuard, SignatureToCheck, Unauthenticated, WebhookCredentials, check_headers,
    sign, signature_matches,
)

TOKEN = b"s3cret-token"
NOW = 1_800_000_000.0
BODY = b'{"version": "4", "alerts": []}'
CREDENTIALS = WebhookCredentials(token=TOKEN, basic_username=b"alertmanager", basic_password=b"pa:ss")


def headers(*, authorization: bytes | None = None, timestamp: bytes | None = None, signature: bytes | None = None,
            credentials: WebhookCredentials = CREDENTIALS, now: float = NOW, window: float = 300) -> HeaderVerdict:
    return check_headers(authorization=authorization, timestamp=timestamp, signature=signature,
                         credentials=credentials, now=now, window_seconds=window)


def basic(user: bytes, password: bytes) -> bytes:
    return b"Basic " + base64.b64encode(user + b":" + password)


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body_keyed_with_the_token() -> None:
    expected = hmac.new(TOKEN, b"1800000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(TOKEN, 1_800_000_000, BODY) == b"sha256=" + expected.encode()


def test_bearer_token_is_decided_from_the_headers() -> None:
    assert headers(authorization=b"Bearer " + TOKEN) == Authenticated("bearer")
    assert headers(authorization=b"bearer  " + TOKEN + b" ") == Authenticated("bearer")
    for wrong in (b"Bearer " + TOKEN[:-1], b"Bearer", b"Bearer ", b"Token " + TOKEN, b"Bearer " + TOKEN + b"\xff",
                  b"\xff" * 1000):
        assert isinstance(headers(authorization=wrong), Unauthenticated), wrong
    assert isinstance(headers(), Unauthenticated)


def test_basic_auth_needs_both_parts_and_only_when_configured() -> None:
    assert headers(authorization=basic(b"alertmanager", b"pa:ss")) == Authenticated("basic:alertmanager")
    for wrong in (basic(b"alertmanager", b"pa:s"), basic(b"other", b"pa:ss"), basic(b"alertmanager", b""),
                  b"Basic " + base64.b64encode(b"alertmanager"), b"Basic !!notbase64", b"Basic " + TOKEN):
        assert isinstance(headers(authorization=wrong), Unauthenticated), wrong
    unconfigured = WebhookCredentials(token=TOKEN)
    assert isinstance(headers(authorization=basic(b"alertmanager", b"pa:ss"), credentials=unconfigured),
                      Unauthenticated)


def test_signature_headers_are_checked_for_form_and_freshness_before_the_body() -> None:
    good = sign(TOKEN, int(NOW), BODY)
    assert headers(timestamp=b"1800000000", signature=good) == SignatureToCheck(1_800_000_000, good)
    assert headers(timestamp=b"1800000300", signature=good) == SignatureToCheck(1_800_000_300, good)  # edge
    stale = headers(timestamp=b"1799999699", signature=good)
    assert isinstance(stale, Unauthenticated) and "300 s" in stale.reason
    assert isinstance(headers(timestamp=b"1800000301", signature=good), Unauthenticated)  # from the future
    assert isinstance(headers(timestamp=b"1800000000", signature=good, window=0.5, now=NOW + 1), Unauthenticated)
    for timestamp in (b"", b"-1", b"1.8e9", b"1800000000.5", b"\xd9\xa1" * 3, b"9" * 40):
        assert isinstance(headers(timestamp=timestamp, signature=good), Unauthenticated), timestamp
    for signature in (b"sha256=", good.upper(), good[:-1], good + b"0", b"sha1=" + good[7:], good + b"\xff"):
        assert isinstance(headers(timestamp=b"1800000000", signature=signature), Unauthenticated), signature
    assert isinstance(headers(signature=good), Unauthenticated)  # a signature needs its timestamp
    assert isinstance(headers(timestamp=b"1800000000"), Unauthenticated)
    # a wrong bearer token does not hide a signature; a right one needs none
    assert headers(authorization=b"Bearer nope", timestamp=b"1800000000", signature=good) == \
        SignatureToCheck(1_800_000_000, good)
    assert headers(authorization=b"Bearer " + TOKEN, timestamp=b"1", signature=b"x") == Authenticated("bearer")


def test_the_signature_covers_key_timestamp_and_body() -> None:
    claim = SignatureToCheck(1_800_000_000, sign(TOKEN, 1_800_000_000, BODY))
    assert signature_matches(TOKEN, claim, BODY)
    assert not signature_matches(TOKEN, claim, BODY + b" ")
    assert not signature_matches(b"other key", claim, BODY)
    moved = SignatureToCheck(1_800_000_001, claim.signature)  # the same signature with a fresher timestamp
    assert not signature_matches(TOKEN, moved, BODY)


def test_a_signature_is_accepted_once_within_its_window() -> None:
    guard = ReplayGuard(window_seconds=300)
    claim = SignatureToCheck(1_800_000_000, sign(TOKEN, 1_800_000_000, BODY))
    assert guard.remember(claim, now=NOW) == "first use"
    assert guard.remember(claim, now=NOW + 1) == "replay"
    assert guard.remember(claim, now=NOW + 300) == "replay"  # still inside the window
    assert guard.remember(SignatureToCheck(1_800_000_001, sign(TOKEN, 1_800_000_001, BODY)), now=NOW) == "first use"
    assert len(guard) == 2
    # once its timestamp is out of the window the headers refuse it; the guard forgets it
    assert guard.remember(SignatureToCheck(1_800_000_400, sign(TOKEN, 1_800_000_400, BODY)), now=NOW + 400) \
        == "first use"
    assert len(guard) == 1


def test_a_failed_request_may_be_retried_with_the_same_signature() -> None:
    guard = ReplayGuard(window_seconds=300)
    claim = SignatureToCheck(1_800_000_000, sign(TOKEN, 1_800_000_000, BODY))
    assert guard.remember(claim, now=NOW) == "first use"
    guard.forget(claim)
    assert guard.remember(claim, now=NOW + 1) == "first use"
    assert guard.remember(claim, now=NOW + 2) == "replay"


def test_a_full_replay_guard_refuses_rather_than_forgetting_early() -> None:
    guard = ReplayGuard(window_seconds=300, max_entries=2)
    claims = [SignatureToCheck(1_800_000_000 + i, sign(TOKEN, 1_800_000_000 + i, BODY)) for i in range(3)]
    assert [guard.remember(c, now=NOW) for c in claims] == ["first use", "first use", "full"]
    assert guard.remember(claims[0], now=NOW) == "replay"
    assert guard.seconds_until_room(now=NOW) == 300
    assert guard.remember(claims[2], now=NOW + 300.5) == "first use"  # the first one expired


def test_token_bucket_take_refuses_without_owing() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=2, clock=lambda: now[0])
    assert [bucket.take(), bucket.take()] == [0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)
    assert bucket.take() == pytest.approx(0.5)  # refusals take nothing: the wait does not grow
    now[0] += 0.5
    assert bucket.take() == 0.0
    assert bucket.take() == pytest.approx(0.5)


def test_rate_limits_are_per_client_and_bounded() -> None:
    now = [0.0]
    limits = ClientRateLimits(per_second=1.0, burst=3, max_clients=2, clock=lambda: now[0])
    assert [limits.retry_after("bearer") for _ in range(4)] == [0.0, 0.0, 0.0, pytest.approx(1.0)]
    assert limits.retry_after("10.0.0.7") == 0.0  # another client has its own bucket
    now[0] += 1.0
    assert limits.retry_after("bearer") == 0.0
    assert limits.retry_after("bearer") == pytest.approx(1.0)
    limits.retry_after("10.0.0.8")  # a third client: the least recently used one is forgotten
    assert len(limits) == 2
    assert [limits.retry_after("10.0.0.7") for _ in range(3)] == [0.0, 0.0, 0.0]  # started anew, full
    with pytest.raises(ValueError):
        ClientRateLimits(per_second=0, burst=1)
