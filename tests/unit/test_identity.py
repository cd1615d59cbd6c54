"""Verified identity: the token file (hashed storage, lookup) and OIDC ID tokens checked against a real RSA key's
JWKS served over HTTP by an in-test issuer (workers/identity.py fetches and caches it); the API's routes."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import jwt
import pytest

from pitstop.config import OidcSettings
from pitstop.identity import CredentialRefused
from pitstop.identity.tokens import TokenFile, token_hash
from tests.fixtures.oidc_issuer import AUDIENCE, serving_issuer
from pitstop.workers.api import ApiRefused, route
from pitstop.workers.api_actions import Operation
from pitstop.workers.identity import Authenticator, add_token, load_token_file

NOW = datetime(2026, 12, 5, tzinfo=timezone.utc)


def test_token_file_stores_only_hashes_and_maps_tokens_to_users(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    token = add_token(path, "alice", groups=["sre"], label="laptop")
    second = add_token(path, "alice", groups=["oncall"])
    assert token not in path.read_text() and token_hash(token) in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    stored = load_token_file(path)
    identity = stored.identity_for(token)
    assert (identity.subject, identity.groups, identity.method) == ("alice", frozenset({"sre", "oncall"}), "token-file")
    assert stored.identity_for(second).subject == "alice"
    with pytest.raises(CredentialRefused, match="unknown token"):
        stored.identity_for(token + "x")


def test_token_file_errors_name_the_file_and_field() -> None:
    with pytest.raises(ValueError, match=r"t.yaml: users.bob.tokens.0.sha256"):
        TokenFile.parse("users: {bob: {tokens: [{sha256: nothex, created: 2026-01-01T00:00:00Z}]}}", source="t.yaml")
    _, token = TokenFile().with_new_token("carol", groups=[], now=NOW)
    assert token.startswith("pst_")


async def _identify(authenticator: Authenticator, token: str) -> str:
    identity = await authenticator.identify(f"Bearer {token}")
    return f"{identity.subject} {sorted(identity.groups)} {identity.method}"


async def test_oidc_tokens_are_verified_against_the_issuers_jwks(tmp_path: Path) -> None:
    with serving_issuer() as issuer:
        authenticator = Authenticator(tokens_file=tmp_path / "none.yaml",
                                      oidc=OidcSettings(issuer=issuer.issuer, audience=AUDIENCE))
        try:
            assert await _identify(authenticator, issuer.token("alice@example.com", groups=["sre"])) == \
                "alice@example.com ['sre'] oidc"
            refusals = {
                "expired": issuer.token("a", expires_in=-120),
                "not valid yet": issuer.token("a", not_before_in=600),
                "audience": issuer.token("a", audience="someone-else"),
                "issuer": issuer.token("a", issuer="https://evil.example.com"),
                "signature does not verify": issuer.token("a", rogue=True),
                "no key 'other'": issuer.token("a", rogue=True, kid="other"),
            }
            for reason, token in refusals.items():
                with pytest.raises(CredentialRefused, match=reason):
                    await authenticator.identify(f"Bearer {token}")
            unsigned = jwt.encode({"iss": issuer.issuer, "aud": AUDIENCE, "sub": "x", "exp": 9999999999},
                                  "secret-secret-secret-secret-secret!", algorithm="HS256")
            with pytest.raises(CredentialRefused, match="not accepted"):
                await authenticator.identify(f"Bearer {unsigned}")
            assert issuer.jwks_fetches == 1  # cached (the unknown kid within MIN_REFETCH_SECONDS did not refetch)
        finally:
            await authenticator.aclose()


async def test_without_oidc_or_token_file_every_credential_is_refused(tmp_path: Path) -> None:
    authenticator = Authenticator(tokens_file=tmp_path / "absent.yaml", oidc=None)
    for header, reason in ((None, "no credential"), ("Basic abc", "Bearer"), ("Bearer pst_x", "no token file"),
                           ("Bearer a.b.c", "OIDC tokens are not accepted")):
        with pytest.raises(CredentialRefused, match=reason):
            await authenticator.identify(header)


async def test_an_unreachable_issuer_refuses_in_bounded_time(tmp_path: Path) -> None:
    with serving_issuer() as issuer:
        token = issuer.token("a")
        gone = issuer.url
    authenticator = Authenticator(tokens_file=tmp_path / "t.yaml",
                                  oidc=OidcSettings(issuer=gone, audience=AUDIENCE, fetch_timeout_seconds=2))
    with pytest.raises(CredentialRefused, match="discovery document"):
        await authenticator.identify(f"Bearer {token}")
    await authenticator.aclose()


def test_routes() -> None:
    assert route("POST", "/api/v1/runs") == Operation("runs", None, "start")
    assert route("POST", "/api/v1/runs/a%2Frelease/approve") == Operation("runs", "a/release", "approve")
    assert route("POST", "/api/v1/releases/r1/rollback") == Operation("releases", "r1", "rollback")
    assert route("POST", "/api/v1/schedules/s/unpause") == Operation("schedules", "s", "unpause")
    assert route("GET", "/api/v1/whoami") == "whoami"
    assert route("POST", "/api/v1/schedules") == Operation("schedules", None, "apply")
    assert route("POST", "/api/v1/chaos") == Operation("chaos", None, "start")
    assert route("POST", "/api/v1/chaos/c1/abort") == Operation("chaos", "c1", "abort")
    assert route("POST", "/api/v1/rightsizing") == Operation("rightsizing", None, "start")
    assert route("POST", "/api/v1/alerts") is None and route("POST", "/alerts") is None
    for method, path, status in (("GET", "/api/v1/runs/x/approve", 405), ("POST", "/api/v1/runs/x/promote", 404),
                                 ("POST", "/api/v1/runs/x/start", 404), ("POST", "/api/v1/incidents/x/pause", 404),
                                 ("POST", "/api/v1/releases", 404), ("POST", "/api/v1/schedules/x/apply", 404),
                                 ("POST", "/api/v1/chaos/x/start", 404), ("POST", "/api/v1/rightsizing/x/abort", 404),
                                 ("GET", "/api/v1/chaos", 405)):
        with pytest.raises(ApiRefused) as refused:
            route(method, path)
        assert refused.value.status == status, path


def test_start_claims_verify_only_for_their_run_with_the_shared_key() -> None:
    from pitstop.access import Identity
    from pitstop.identity.start_claims import WEB_UI, sign_claim, verified_starter

    alice = Identity(subject="alice", groups=frozenset({"sre"}), method="oidc")
    claim = sign_claim(b"k" * 32, workflow_id="run-1", runbook="canary", identity=alice)
    assert verified_starter(b"k" * 32, claim, workflow_id="run-1", runbook="canary") == (alice, "signed by the pitstop API")
    for key, changed, run, runbook in ((b"x" * 32, claim, "run-1", "canary"), (b"k" * 32, claim, "run-2", "canary"),
                                       (b"k" * 32, claim, "run-1", "restart-service"),
                                       (b"k" * 32, {**claim, "groups": ["sre", "sre-lead"]}, "run-1", "canary")):
        identity, why = verified_starter(key, changed, workflow_id=run, runbook=runbook)
        assert identity == WEB_UI and "does not verify" in why
    assert verified_starter(None, claim, workflow_id="run-1", runbook="canary")[0] == WEB_UI
    assert verified_starter(b"k" * 32, None, workflow_id="run-1", runbook="canary")[1].startswith("no start claim")
    assert verified_starter(b"k" * 32, {"subject": 1}, workflow_id="run-1", runbook="canary")[1] == "malformed start claim"
