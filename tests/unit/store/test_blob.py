"""The blob format layer: round trips, the byte layout the spec promises, the reader's
file-like behaviour, and a parser that only ever answers with IntegrityError."""

from __future__ import annotations

import hashlib
import hmac
import io
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.errors import ConfigError, IntegrityError
from bastion.security.keys import LocalKeyring
from bastion.store.blob import (
    FIXED_HEADER_LEN,
    TAG_LEN,
    BlobReader,
    check_chunk_size,
    check_kek_id,
    read_header,
    write_blob,
)
from tests.helpers.keys import FixedKeyring

KEK_HEX = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
MIB = 1 << 20


def _seal(data: bytes, keys: object, chunk_size: int) -> tuple[bytes, str, int]:
    out = io.BytesIO()
    digest, size = write_blob(io.BytesIO(data), out, keys, chunk_size=chunk_size)  # type: ignore[arg-type]
    return out.getvalue(), digest, size


def _open(blob: bytes, keys: object, digest: str | None = None) -> BlobReader:
    return BlobReader(io.BytesIO(blob), keys, where="test blob", expected_digest=digest)  # type: ignore[arg-type]


def _decode_by_hand(blob: bytes, keys: FixedKeyring) -> bytes:
    """An independent reader written from docs/formats/artifact.md, not from blob.py."""
    magic, version, alg, reserved, chunk_size, prefix = struct.unpack(">4sBBHI8s", blob[:20])
    assert (magic, version, alg, reserved) == (b"BSTN", 1, 1, 0)
    fixed = blob[:52]
    header_hash = hashlib.sha256(fixed).digest()
    kek_len = blob[52]
    kek = blob[53 : 53 + kek_len]
    (wrapped_len,) = struct.unpack(">H", blob[53 + kek_len : 55 + kek_len])
    body = 55 + kek_len + wrapped_len
    wrapped = blob[55 + kek_len : body]
    dek = keys.unwrap(kek.decode(), wrapped, b"bastion/artifact/v1/dek" + header_hash + kek)
    commit = hmac.new(dek, b"bastion/artifact/v1/commit" + fixed[:20], hashlib.sha256).digest()
    assert commit == fixed[20:52]
    records = [blob[i : i + chunk_size + 16] for i in range(body, len(blob), chunk_size + 16)]
    plain = b""
    for index, record in enumerate(records):
        final = index == len(records) - 1
        nonce = prefix + struct.pack(">I", index)
        aad = header_hash + struct.pack(">QB", index, final)
        plain += AESGCM(dek).decrypt(nonce, record, aad)
    return plain


@pytest.fixture(scope="module")
def fixed() -> FixedKeyring:
    return FixedKeyring({"kek-test": KEK_HEX})


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=1200), chunk_size=st.sampled_from([16, 17, 64, 100, 255]))
def test_round_trip_any_size_and_chunk_size(
    data: bytes, chunk_size: int, fixed: FixedKeyring
) -> None:
    blob, digest, size = _seal(data, fixed, chunk_size)
    assert digest == hashlib.sha256(data).hexdigest()
    assert size == len(data)
    with _open(blob, fixed, digest) as reader:
        assert reader.read() == data
        assert reader.digest == digest
    assert _decode_by_hand(blob, fixed) == data


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 128, 64 * 7, 64 * 7 + 5])
def test_chunk_layout_matches_the_spec(size: int, fixed: FixedKeyring) -> None:
    """Every chunk but the last holds chunk_size bytes; the last 1..chunk_size, or 0 only
    when the whole plaintext is empty."""
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    blob, _, _ = _seal(data, fixed, 64)
    header = read_header(io.BytesIO(blob), "test")
    body = len(blob) - header.body_offset
    chunks = max(1, -(-size // 64))
    assert body == size + chunks * TAG_LEN
    assert header.chunk_size == 64 and header.kek_id == "kek-test"
    assert header.fixed == blob[:FIXED_HEADER_LEN]
    assert _decode_by_hand(blob, fixed) == data


@pytest.mark.parametrize("size", [3 * MIB, 3 * MIB + 1, MIB - 1])
def test_round_trip_with_real_one_mib_chunks(size: int, module_keyring: LocalKeyring) -> None:
    data = bytes(size // 7 + 1) + b"\x01" * size
    data = data[:size]
    blob, digest, _ = _seal(data, module_keyring, MIB)
    assert digest == hashlib.sha256(data).hexdigest()
    with _open(blob, module_keyring, digest) as reader:
        parts = [bytes(chunk) for chunk in reader.chunks()]
    assert b"".join(parts) == data
    assert [len(p) for p in parts][:-1] == [MIB] * (len(parts) - 1)


def test_reader_is_file_like(fixed: FixedKeyring) -> None:
    data = b"line one\nline two\n" + bytes(range(256)) * 3 + b"\nlast"
    blob, digest, _ = _seal(data, fixed, 16)
    with _open(blob, fixed, digest) as reader:
        assert reader.readable()
        assert reader.peek(4).startswith(b"line")
        assert reader.read(5) == b"line "
        assert reader.read1(100) == b"one\nline tw"  # the rest of the 16-byte chunk
    with _open(blob, fixed, digest) as reader:
        assert list(reader) == io.BytesIO(data).readlines()
    with _open(blob, fixed, digest) as reader:
        buf = bytearray(37)
        got = b""
        while n := reader.readinto(buf):
            got += buf[:n]
        assert got == data
        assert reader.read(10) == b"" and reader.read() == b""
    assert reader.closed
    with pytest.raises(ValueError, match="closed"):
        reader.read(1)


def test_read_pieces_of_any_size_give_the_plaintext(fixed: FixedKeyring) -> None:
    data = bytes(range(256)) * 4
    blob, digest, _ = _seal(data, fixed, 16)
    for piece in (1, 7, 16, 17, 1000, 5000):
        with _open(blob, fixed, digest) as reader:
            got = b""
            while chunk := reader.read(piece):
                assert len(chunk) == piece or len(got) + len(chunk) == len(data)
                got += chunk
        assert got == data


def test_a_failed_reader_keeps_failing(fixed: FixedKeyring) -> None:
    blob = bytearray(_seal(b"x" * 100, fixed, 16)[0])
    blob[-1] ^= 1
    reader = _open(bytes(blob), fixed)
    with pytest.raises(IntegrityError):
        reader.read()
    with pytest.raises(IntegrityError, match="chunk 6"):
        reader.read()
    reader.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(junk=st.binary(max_size=400))
def test_parser_answers_any_bytes_with_integrity_error(junk: bytes, fixed: FixedKeyring) -> None:
    with pytest.raises(IntegrityError):
        _open(junk, fixed).read()


@settings(max_examples=200, deadline=None)
@given(tail=st.binary(max_size=200), cut=st.integers(0, 120))
def test_parser_answers_a_valid_prefix_with_junk_with_integrity_error(
    tail: bytes, cut: int, fixed: FixedKeyring
) -> None:
    blob, digest, _ = _seal(b"some plaintext", fixed, 16)
    damaged = blob[: min(cut, len(blob) - 1)] + tail
    if damaged == blob:
        return
    with pytest.raises(IntegrityError):
        _open(damaged, fixed, digest).read()


@pytest.mark.parametrize("size", [15, 64 * 1024 * 1024 + 1, 0, -1])
def test_chunk_size_out_of_range_is_a_config_error(size: int) -> None:
    with pytest.raises(
        ConfigError, match=rf"chunk_size: expected 16\.\.67108864 bytes, got {size}$"
    ):
        check_chunk_size(size)


@pytest.mark.parametrize("kek_id", ["", "x" * 65, "kek/1", "kék", "kek 1", "kek\n"])
def test_a_kek_id_that_does_not_fit_a_key_slot_is_a_config_error(kek_id: str) -> None:
    with pytest.raises(ConfigError, match=r"kek id: expected 1\.\.64 characters"):
        check_kek_id(kek_id)


def test_fresh_data_key_and_nonce_prefix_per_blob(fixed: FixedKeyring) -> None:
    one, _, _ = _seal(b"same plaintext", fixed, 16)
    two, _, _ = _seal(b"same plaintext", fixed, 16)
    assert one[12:20] != two[12:20]  # nonce prefix
    assert one[20:52] != two[20:52]  # commitment, so the data key
    assert one[-30:] != two[-30:]


def test_read_of_a_huge_size_does_not_preallocate(fixed: FixedKeyring) -> None:
    blob, digest, _ = _seal(b"small", fixed, 16)
    with _open(blob, fixed, digest) as reader:
        assert reader.read(1 << 40) == b"small"


def test_a_non_blocking_source_without_data_is_refused_not_truncated(fixed: FixedKeyring) -> None:
    class Dry(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buf: memoryview) -> None:  # type: ignore[override]
            return None  # what a non-blocking stream says when it has nothing yet

    with pytest.raises(ConfigError, match="non-blocking"):
        _seal_stream(Dry(), fixed, 16)


def _seal_stream(src: io.RawIOBase, keys: FixedKeyring, chunk_size: int) -> None:
    write_blob(src, io.BytesIO(), keys, chunk_size=chunk_size)  # type: ignore[arg-type]


@pytest.mark.parametrize("chunk_size", [16, MIB])
def test_a_failing_destination_fails_the_write(fixed: FixedKeyring, chunk_size: int) -> None:
    class DiskFull:
        def __init__(self) -> None:
            self.writes = 0

        def write(self, data: memoryview) -> int:
            self.writes += 1
            if self.writes > 3:
                raise OSError(28, "No space left on device")
            return len(data)

    with pytest.raises(OSError, match="No space left"):
        write_blob(io.BytesIO(bytes(10 * chunk_size)), DiskFull(), fixed, chunk_size=chunk_size)
