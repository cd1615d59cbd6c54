"""The local token file of the embedded default: API tokens mapped to a user and groups.

Tokens are stored only as their SHA-256 (a token is 32 random bytes, so a plain hash is enough; no salt or
stretching is needed as for passwords); `pitstop tokens add USER --group G` prints a new token once. The file:

```yaml
users:
  alice:
    groups: [sre]
    tokens:
      - {sha256: 9f86d0..., created: "2026-12-05T09:00:00Z", label: laptop}
```
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

import yaml
from pydantic import BaseModel, Field, ValidationError

from pitstop.access import Identity

from . import CredentialRefused

TOKEN_PREFIX = "pst_"  # tells a pitstop token from a JWT at a glance (and in leaked-secret scanners)


class StoredToken(BaseModel):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the token")
    created: datetime
    label: str = ""


class TokenUser(BaseModel):
    groups: list[str] = Field(default_factory=list)
    tokens: list[StoredToken] = Field(default_factory=list)


class TokenFile(BaseModel):
    users: dict[str, TokenUser] = Field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, *, source: str) -> TokenFile:
        """The file's text -> TokenFile; a ValueError naming `source` and the field at fault."""
        try:
            data = yaml.safe_load(text) if text.strip() else {}
            return cls.model_validate(data or {})
        except yaml.YAMLError as exc:
            raise ValueError(f"{source}: not YAML: {exc}") from None
        except ValidationError as exc:
            where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3])
            raise ValueError(f"{source}: {where}") from None

    def dumps(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=True)

    def with_new_token(self, user: str, *, groups: list[str], now: datetime, label: str = "") -> tuple[TokenFile, str]:
        """A copy holding a new token for `user` (created if absent; `groups` added to theirs), and the token."""
        if not user.strip():
            raise ValueError("the user name is empty")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        users = {name: entry.model_copy(deep=True) for name, entry in self.users.items()}
        entry = users.setdefault(user, TokenUser())
        entry.groups = sorted(set(entry.groups) | set(groups))
        entry.tokens.append(StoredToken(sha256=token_hash(token), created=now, label=label))
        return TokenFile(users=users), token

    def identity_for(self, token: str) -> Identity:
        """The user whose stored hash matches `token`, or CredentialRefused."""
        digest = token_hash(token)
        for name, entry in self.users.items():
            for stored in entry.tokens:
                if hmac.compare_digest(stored.sha256, digest):
                    return Identity(subject=name, groups=frozenset(entry.groups), method="token-file")
        raise CredentialRefused("unknown token (not in the token file)")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
