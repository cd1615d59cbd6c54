"""Masking of credentials in what pitstop reports about HTTP calls."""

from __future__ import annotations

from pitstop.redaction import MASK, looks_like_credential, mask_headers, mask_url


def test_sensitive_headers_and_credential_values_are_masked() -> None:
    masked = mask_headers(
        {
            "Authorization": "Bearer abc",
            "X-Api-Key": "k",
            "Content-Type": "application/json",
            "X-Trace": "Bearer eyJhbGciOi.J9.x",
            "X-Opaque": "a1B2c3D4e5F6g7H8i9J0k1L2m3N4",
            "Idempotency-Key": "run-1/step-a",
        }
    )
    assert masked == {
        "Authorization": MASK,
        "X-Api-Key": MASK,
        "Content-Type": "application/json",
        "X-Trace": MASK,
        "X-Opaque": MASK,
        "Idempotency-Key": "run-1/step-a",
    }


def test_plain_values_are_not_credentials() -> None:
    assert not looks_like_credential("application/json")
    assert not looks_like_credential("team-ota")
    assert looks_like_credential("ghp_abcdefghijklmnopqrstuvwxyz0123")


def test_urls_lose_userinfo_and_query_values() -> None:
    assert mask_url("https://user:pw@hooks.example.com/a/b?token=s3cret&x") == f"https://{MASK}@hooks.example.com/a/b?token={MASK}&x"
    assert mask_url("http://127.0.0.1:9/hook") == "http://127.0.0.1:9/hook"
