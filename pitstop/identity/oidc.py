"""OIDC ID tokens: a JWT checked against the issuer's keys (JWKS) with PyJWT — signature (RS256/ES256 only),
issuer, audience, expiry and not-before — then mapped to an `Identity` (subject and groups claims by name).
The keys are given; fetching and caching them is `workers/identity.py`'s job.
"""

from __future__ import annotations

from typing import Any

import jwt
from pydantic import BaseModel, Field

from pitstop.access import Identity

from . import CredentialRefused

ALGORITHMS = ("RS256", "ES256")


class OidcRules(BaseModel):
    """What an ID token must carry to be accepted."""

    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    subject_claim: str = "email"
    groups_claim: str = "groups"
    leeway_seconds: float = Field(30.0, ge=0, le=300)


def token_key_id(token: str) -> str | None:
    """The `kid` in the token's header (unverified), or CredentialRefused when it is not a JWT."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise CredentialRefused(f"not a JWT: {exc}") from None
    if header.get("alg") not in ALGORITHMS:
        raise CredentialRefused(f"token algorithm {header.get('alg')!r} is not accepted (only {', '.join(ALGORITHMS)})")
    kid = header.get("kid")
    return str(kid) if kid is not None else None


def verify_id_token(token: str, *, keys: jwt.PyJWKSet, rules: OidcRules) -> Identity:
    """A verified Identity, or CredentialRefused saying what failed (expired, wrong issuer, bad signature...)."""
    kid = token_key_id(token)
    candidates = [k for k in keys.keys if kid is None or k.key_id == kid]
    if not candidates:
        raise CredentialRefused(f"no key {kid!r} in the issuer's JWKS")
    claims: dict[str, Any] | None = None
    for key in candidates:
        try:
            claims = jwt.decode(token, key=key, algorithms=list(ALGORITHMS), audience=rules.audience,
                                issuer=rules.issuer, leeway=rules.leeway_seconds,
                                options={"require": ["exp", "iss", "aud", "sub"]})
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.ExpiredSignatureError:
            raise CredentialRefused("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise CredentialRefused("the token is not valid yet (nbf/iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise CredentialRefused(f"the token's audience is not {rules.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise CredentialRefused(f"the token's issuer is not {rules.issuer!r}") from None
        except jwt.PyJWTError as exc:
            raise CredentialRefused(f"invalid token: {exc}") from None
    if claims is None:
        raise CredentialRefused("the token's signature does not verify with the issuer's keys")
    subject = claims.get(rules.subject_claim) or claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise CredentialRefused(f"the token has no {rules.subject_claim!r} claim")
    raw_groups = claims.get(rules.groups_claim, [])
    groups = frozenset(str(g) for g in raw_groups) if isinstance(raw_groups, list) else frozenset()
    return Identity(subject=subject, groups=groups, method="oidc")
