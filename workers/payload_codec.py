"""Encrypted Temporal payloads: an AES-256-GCM `PayloadCodec` for every pitstop client and worker, its key ring,
and decoding of fetched histories.

With `security.payload_keys_file` set, every payload pitstop sends to Temporal (workflow and activity inputs and
results, signals, updates, queries, memos, failure details) is encrypted before it leaves the process; Temporal
stores and shows only ciphertext. Search attributes stay plain text (Temporal indexes them: runbook name, target,
trigger, phase). Failure *messages* are plain text too (pitstop's own wording plus API error details).

Encrypted payload: metadata `encoding: binary/encrypted` and `encryption-key-id: <id>`; data = 12-byte nonce +
AES-GCM ciphertext of the serialised original payload, with the key id as associated data (a payload cannot be
re-labelled with another key id). Payloads without that encoding pass through `decode` unchanged, so histories
written before encryption was turned on stay readable.

Key ring file (YAML, 0600, never in git): `{active: ID, keys: {ID: <base64 of 32 bytes>, ...}}`. The active key
encrypts; every key decrypts. Rotation (`pitstop keys rotate`) adds a key and makes it active; old keys stay
until no retained history uses them.
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHistory
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
NONCE_BYTES = 12
KEY_BYTES = 32
_SEARCH_ATTRIBUTES = "temporal.api.common.v1.SearchAttributes"
_PAYLOADS = "temporal.api.common.v1.Payloads"
_PAYLOAD = "temporal.api.common.v1.Payload"


class KeyRingError(ValueError):
    """The key ring file is missing, readable by others, or malformed; the message names the file and the fault."""


class KeyRing:
    """Key id -> 32-byte key, and the id of the key that encrypts."""

    def __init__(self, *, active: str, keys: dict[str, bytes]) -> None:
        if active not in keys:
            raise KeyRingError(f"active key {active!r} is not among the keys {sorted(keys)}")
        self.active = active
        self.keys = keys

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        if not path.is_file():
            raise KeyRingError(f"{path}: payload key ring not found (create one with `pitstop keys rotate --file {path}`)")
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise KeyRingError(f"{path}: readable by group or others (mode {mode:o}); run `chmod 600 {path}`")
        try:
            data = yaml.safe_load(path.read_text()) or {}
            keys = {str(kid): base64.b64decode(str(value), validate=True) for kid, value in (data.get("keys") or {}).items()}
        except (yaml.YAMLError, ValueError, AttributeError) as exc:
            raise KeyRingError(f"{path}: not a key ring ({{active: ID, keys: {{ID: base64}}}}): {exc}") from None
        short = sorted(kid for kid, key in keys.items() if len(key) != KEY_BYTES)
        if short:
            raise KeyRingError(f"{path}: keys {short} are not {KEY_BYTES} bytes (AES-256)")
        try:
            return cls(active=str(data.get("active") or ""), keys=keys)
        except KeyRingError as exc:
            raise KeyRingError(f"{path}: {exc}") from None


def rotate_key_ring(path: Path, *, now: datetime | None = None) -> str:
    """Add a new random key to the ring at `path` (created 0600 if absent) and make it the active one; returns its id."""
    ring = KeyRing.load(path) if path.exists() else None
    keys = dict(ring.keys) if ring else {}
    key_id = f"k{(now or datetime.now(UTC)).strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(2)}"
    keys[key_id] = secrets.token_bytes(KEY_BYTES)
    text = yaml.safe_dump({"active": key_id, "keys": {kid: base64.b64encode(key).decode() for kid, key in keys.items()}})
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)
    return key_id


class EncryptionCodec(PayloadCodec):
    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        key_id = self.ring.active
        cipher = AESGCM(self.ring.keys[key_id])
        encoded = []
        for payload in payloads:
            nonce = secrets.token_bytes(NONCE_BYTES)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), key_id.encode())
            encoded.append(Payload(metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id.encode()}, data=nonce + sealed))
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decode_one(payload) for payload in payloads]

    def decode_one(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode()
        key = self.ring.keys.get(key_id)
        if key is None:
            raise ValueError(f"payload encrypted with key {key_id!r}, which is not in the key ring {sorted(self.ring.keys)}")
        try:
            plain = AESGCM(key).decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], key_id.encode())
        except InvalidTag:
            raise ValueError(f"payload encrypted with key {key_id!r} does not decrypt (tampered or wrong key)") from None
        return Payload.FromString(plain)


async def decode_history(history: WorkflowHistory, codec: PayloadCodec) -> None:
    """Decode, in place, every payload of a fetched history (inputs, results, signals, memos, failure details);
    search attributes are left as they are (never encoded)."""
    for event in history.events:
        await _decode_message(event, codec)


async def _decode_message(message: Message, codec: PayloadCodec) -> None:
    name = message.DESCRIPTOR.full_name
    if name == _PAYLOADS:
        await codec.decode_wrapper(message)  # type: ignore[arg-type]
        return
    if name == _PAYLOAD:
        message.CopyFrom((await codec.decode([message]))[0])  # type: ignore[list-item]
        return
    if name == _SEARCH_ATTRIBUTES:
        return
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is not None:
                for item in value.values():
                    await _decode_message(item, codec)
        elif field.is_repeated:
            for item in value:
                await _decode_message(item, codec)
        else:
            await _decode_message(value, codec)


def codec_from_file(path: Path | None) -> EncryptionCodec | None:
    return EncryptionCodec(KeyRing.load(path)) if path is not None else None
