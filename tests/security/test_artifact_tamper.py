"""Attacks on stored artifacts, one test per attack: each must be refused with
IntegrityError (or its subclass UnknownKeyError) before any unverified byte is trusted.

The attacker here can read and write the objects folder but holds no key: they flip bits,
cut files, move chunks, headers and key slots between blobs, edit key ids, append bytes,
and put an old blob in place of another.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bastion.errors import IntegrityError, UnknownKeyError
from bastion.security.audit import AuditLog
from bastion.security.keys import LocalKeyring
from bastion.store.artifacts import ArtifactStore
from bastion.store.blob import TAG_LEN, read_header
from bastion.store.db import make_engine, migrate

PASSPHRASE = "a long test passphrase"
CHUNK = 64


def _make_store(folder: Path, keyring: LocalKeyring | None = None) -> ArtifactStore:
    folder.mkdir(parents=True, exist_ok=True)
    keyring = keyring or LocalKeyring.create(folder / "keyring.json", PASSPHRASE, scrypt_log_n=14)
    engine: sa.Engine = make_engine("sqlite:///" + str(folder / "meta.db"))
    migrate(engine)
    audit = AuditLog(engine, keyring)  # the real log; puts append in their own transaction
    return ArtifactStore(folder / "store", keyring, engine, audit, chunk_size=CHUNK)


class Victim:
    """A store holding two artifacts, A and B, of four chunks each (64, 64, 64, 8 bytes)."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self.a = store.put(os.urandom(200), actor="alice").digest
        self.b = store.put(os.urandom(200), actor="alice").digest
        self.blob_a = self.path(self.a).read_bytes()
        self.blob_b = self.path(self.b).read_bytes()

    def path(self, digest: str) -> Path:
        return self.store.root / "objects" / digest[:2] / digest

    @contextlib.contextmanager
    def planted(self, data: bytes) -> Iterator[str]:
        """Put ``data`` where A's blob lives, for the duration of the block."""
        self.path(self.a).write_bytes(data)
        try:
            yield self.a
        finally:
            self.path(self.a).write_bytes(self.blob_a)

    def refused(self, data: bytes, error: type[IntegrityError] = IntegrityError) -> str:
        with self.planted(data) as digest:
            with pytest.raises(error) as err:
                self.store.verify(digest)
            with pytest.raises(error):
                self.store.read_bytes(digest)
        message = str(err.value)
        assert digest in message and "\n" not in message
        return message


def _parts(blob: bytes) -> tuple[bytes, bytes, list[bytes]]:
    """(fixed header, key slot, chunk records) of a blob."""
    header = read_header(io.BytesIO(blob), "test")
    body = blob[header.body_offset :]
    step = header.chunk_size + TAG_LEN
    return header.fixed, header.slot, [body[i : i + step] for i in range(0, len(body), step)]


@pytest.fixture(scope="module")
def victim(tmp_path_factory: pytest.TempPathFactory) -> Victim:
    return Victim(_make_store(tmp_path_factory.mktemp("victim")))


def test_untouched_blobs_verify(victim: Victim) -> None:
    victim.store.verify(victim.a)
    victim.store.verify(victim.b)
    assert [len(r) for r in _parts(victim.blob_a)[2]] == [80, 80, 80, 24]


@settings(max_examples=400, deadline=None)
@given(data=st.data())
@example(data=None)
def test_bit_flip_anywhere_is_refused(victim: Victim, data: st.DataObject | None) -> None:
    blob = victim.blob_a
    if data is None:  # the explicit example: the very last tag bit
        position, mask = len(blob) - 1, 0x80
    else:
        position = data.draw(st.integers(0, len(blob) - 1), label="position")
        mask = data.draw(st.integers(1, 255), label="xor mask")
    tampered = bytearray(blob)
    tampered[position] ^= mask
    victim.refused(bytes(tampered))


def test_bit_flip_at_every_byte_position_is_refused(victim: Victim) -> None:
    """Exhaustive: one flipped bit in each byte of header, key slot, ciphertexts and tags."""
    blob = victim.blob_a
    for position in range(len(blob)):
        tampered = bytearray(blob)
        tampered[position] ^= 1 << (position % 8)
        with victim.planted(bytes(tampered)) as digest, pytest.raises(IntegrityError):
            victim.store.verify(digest)


def test_truncation_at_every_chunk_boundary_and_mid_chunk_is_refused(victim: Victim) -> None:
    blob = victim.blob_a
    fixed, slot, records = _parts(blob)
    body = len(fixed) + len(slot)
    boundaries = [body + sum(len(r) for r in records[:i]) for i in range(len(records))]
    assert boundaries == [body, body + 80, body + 160, body + 240]
    for cut in range(len(blob)):
        with victim.planted(blob[:cut]) as digest, pytest.raises(IntegrityError):
            victim.store.verify(digest)
    assert "truncated" in victim.refused(blob[: len(fixed) - 1])
    assert "chunk 2 does not authenticate" in victim.refused(blob[: boundaries[3]])


def test_chunk_reordering_is_refused(victim: Victim) -> None:
    fixed, slot, records = _parts(victim.blob_a)
    for i, j in [(0, 1), (1, 2), (0, 2)]:
        swapped = list(records)
        swapped[i], swapped[j] = swapped[j], swapped[i]
        message = victim.refused(fixed + slot + b"".join(swapped))
        assert f"chunk {i} does not authenticate" in message


def test_chunk_dropped_or_duplicated_is_refused(victim: Victim) -> None:
    fixed, slot, records = _parts(victim.blob_a)
    victim.refused(fixed + slot + records[0] + records[2] + records[3])
    victim.refused(fixed + slot + records[0] + records[0] + records[1] + records[2] + records[3])


def test_chunk_splice_between_two_blobs_under_the_same_key_is_refused(victim: Victim) -> None:
    fixed, slot, records = _parts(victim.blob_a)
    _, _, other = _parts(victim.blob_b)
    assert (
        read_header(io.BytesIO(victim.blob_b), "b").kek_id
        == read_header(io.BytesIO(victim.blob_a), "a").kek_id
    )
    for index in range(len(records)):
        spliced = list(records)
        spliced[index] = other[index]
        message = victim.refused(fixed + slot + b"".join(spliced))
        assert f"chunk {index} does not authenticate" in message


def test_header_swap_between_blobs_is_refused(victim: Victim) -> None:
    _, slot, records = _parts(victim.blob_a)
    other_fixed, other_slot, _ = _parts(victim.blob_b)
    message = victim.refused(other_fixed + slot + b"".join(records))
    assert "data key does not unwrap" in message
    # header and key slot together: the data key opens, but it is B's, so A's chunks fail
    message = victim.refused(other_fixed + other_slot + b"".join(records))
    assert "chunk 0 does not authenticate" in message


def test_wrapped_key_swap_between_blobs_is_refused(victim: Victim) -> None:
    fixed, _, records = _parts(victim.blob_a)
    _, other_slot, _ = _parts(victim.blob_b)
    assert "data key does not unwrap" in victim.refused(fixed + other_slot + b"".join(records))


def test_key_id_edit_is_refused(tmp_path: Path) -> None:
    keyring = LocalKeyring.create(tmp_path / "keyring.json", PASSPHRASE, scrypt_log_n=14)
    first = keyring.active_kek()
    victim = Victim(_make_store(tmp_path / "s", keyring))
    second = keyring.add_kek()  # both keys are in the ring; ids have the same length
    assert len(first) == len(second)
    edited = victim.blob_a.replace(first.encode(), second.encode())
    message = victim.refused(edited)
    assert "data key does not unwrap" in message
    assert not isinstance(_error_of(victim, edited), UnknownKeyError)
    unknown = victim.blob_a.replace(first.encode(), b"kek-" + b"0" * (len(first) - 4))
    victim.refused(unknown, UnknownKeyError)


def _error_of(victim: Victim, data: bytes) -> IntegrityError:
    with victim.planted(data) as digest:
        try:
            victim.store.verify(digest)
        except IntegrityError as exc:
            return exc
    raise AssertionError("not refused")


def test_replay_of_an_old_blob_under_another_digest_is_refused(
    victim: Victim, tmp_path: Path
) -> None:
    message = victim.refused(victim.blob_b)  # B's intact blob filed under A's name
    assert "does not hash to its digest" in message
    with victim.planted(victim.blob_b) as digest:
        reader = victim.store.open(digest)
        got = b""
        with pytest.raises(IntegrityError), reader:
            while piece := reader.read(10):
                got += piece
        assert len(got) < 200  # the final chunk is never handed out
        with pytest.raises(IntegrityError):
            victim.store.export(digest, tmp_path / "out.bin")
        assert not (tmp_path / "out.bin").exists()


def test_unknown_key_id_is_refused(victim: Victim, tmp_path: Path) -> None:
    foreign = _make_store(tmp_path / "foreign")  # another keyring altogether
    digest = foreign.put(os.urandom(200), actor="mallory").digest
    blob = (foreign.root / "objects" / digest[:2] / digest).read_bytes()
    message = victim.refused(blob, UnknownKeyError)
    assert "which the keyring lacks" in message


def test_blob_under_a_retired_key_is_refused(tmp_path: Path) -> None:
    keyring = LocalKeyring.create(tmp_path / "keyring.json", PASSPHRASE, scrypt_log_n=14)
    victim = Victim(_make_store(tmp_path / "s", keyring))
    old_blob = victim.blob_a  # a backup taken before rotation
    new = keyring.add_kek()
    for digest in (victim.a, victim.b):
        victim.store.rewrap(digest, new)
    victim.blob_a = victim.path(victim.a).read_bytes()
    keyring.retire_kek(read_header(io.BytesIO(old_blob), "old").kek_id, in_use={new})
    victim.refused(old_blob, UnknownKeyError)


def test_trailing_bytes_appended_are_refused(victim: Victim) -> None:
    _, _, records = _parts(victim.blob_a)
    for tail in (b"\x00", os.urandom(16), os.urandom(CHUNK + TAG_LEN), records[-1]):
        victim.refused(victim.blob_a + tail)


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (4, 2, "unsupported format version 2, expected 1"),
        (4, 0, "unsupported format version 0, expected 1"),
        (5, 2, "unsupported algorithm 2, expected 1"),
        (5, 255, "unsupported algorithm 255, expected 1"),
    ],
)
def test_unsupported_version_or_algorithm_is_refused(
    victim: Victim, offset: int, value: int, message: str
) -> None:
    tampered = bytearray(victim.blob_a)
    tampered[offset] = value
    assert message in victim.refused(bytes(tampered))


def test_a_blob_that_is_not_a_blob_is_refused(victim: Victim) -> None:
    assert "bad magic" in victim.refused(b"PK\x03\x04" + victim.blob_a[4:])
    assert "truncated" in victim.refused(b"")
