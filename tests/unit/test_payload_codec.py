"""The payload encryption codec and its key ring file (real AES-GCM, real files; no Temporal needed)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload

from pitstop.workers.payload_codec import ENCODING, KEY_ID_METADATA, EncryptionCodec, KeyRing, KeyRingError, rotate_key_ring

PLAIN = Payload(metadata={"encoding": b"json/plain"}, data=b'{"service": "trip-service", "token": "s3cret"}')


def codec(path: Path) -> EncryptionCodec:
    return EncryptionCodec(KeyRing.load(path))


def test_round_trip_hides_the_plaintext_and_names_the_key(tmp_path: Path) -> None:
    ring = tmp_path / "keys.yaml"
    key_id = rotate_key_ring(ring)
    (encrypted,) = asyncio.run(codec(ring).encode([PLAIN]))
    assert encrypted.metadata["encoding"] == ENCODING and encrypted.metadata[KEY_ID_METADATA] == key_id.encode()
    assert b"trip-service" not in encrypted.SerializeToString() and b"s3cret" not in encrypted.data
    assert asyncio.run(codec(ring).decode([encrypted])) == [PLAIN]


def test_rotation_keeps_old_payloads_readable_and_encrypts_with_the_new_key(tmp_path: Path) -> None:
    ring = tmp_path / "keys.yaml"
    old = rotate_key_ring(ring)
    (before,) = asyncio.run(codec(ring).encode([PLAIN]))
    new = rotate_key_ring(ring)
    (after,) = asyncio.run(codec(ring).encode([PLAIN]))
    assert old != new and after.metadata[KEY_ID_METADATA] == new.encode()
    assert asyncio.run(codec(ring).decode([before, after])) == [PLAIN, PLAIN]


def test_unencrypted_payloads_pass_through(tmp_path: Path) -> None:
    ring = tmp_path / "keys.yaml"
    rotate_key_ring(ring)
    assert asyncio.run(codec(ring).decode([PLAIN])) == [PLAIN]


def test_unknown_key_tampering_and_relabelling_are_refused(tmp_path: Path) -> None:
    ring, other = tmp_path / "keys.yaml", tmp_path / "other.yaml"
    rotate_key_ring(ring)
    rotate_key_ring(other)
    (encrypted,) = asyncio.run(codec(ring).encode([PLAIN]))
    with pytest.raises(ValueError, match="not in the key ring"):
        asyncio.run(codec(other).decode([encrypted]))
    tampered = Payload()
    tampered.CopyFrom(encrypted)
    tampered.data = encrypted.data[:-1] + bytes([encrypted.data[-1] ^ 1])
    with pytest.raises(ValueError, match="does not decrypt"):
        asyncio.run(codec(ring).decode([tampered]))


def test_key_ring_file_faults_name_the_file(tmp_path: Path) -> None:
    ring = tmp_path / "keys.yaml"
    with pytest.raises(KeyRingError, match="not found"):
        KeyRing.load(ring)
    rotate_key_ring(ring)
    assert (os.stat(ring).st_mode & 0o777) == 0o600
    os.chmod(ring, 0o644)
    with pytest.raises(KeyRingError, match=r"keys.yaml: readable by group or others"):
        KeyRing.load(ring)
    os.chmod(ring, 0o600)
    ring.write_text("active: a\nkeys: {a: c2hvcnQ=}\n")
    with pytest.raises(KeyRingError, match=r"\['a'\] are not 32 bytes"):
        KeyRing.load(ring)
    ring.write_text("active: b\nkeys: {}\n")
    with pytest.raises(KeyRingError, match="active key 'b'"):
        KeyRing.load(ring)
