"""Regenerate the artifact blob test vectors in this folder (not run by the tests).

    python tests/vectors/artifact/make_vectors.py

This is a second, independent writer of the format in docs/formats/artifact.md: it uses
only struct, hmac, hashlib and AESGCM, never ``bastion``, so that the checked-in vectors
test the library against the document rather than against itself. Every key, nonce and
data key is fixed, so the output is byte-for-byte reproducible.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HERE = Path(__file__).parent
CHUNK = 16
KEKS = {
    "kek-vectors-1": bytes(range(0x00, 0x20)),
    "kek-vectors-2": bytes(range(0x20, 0x40)),
}
MISSING_KEK = ("kek-vectors-missing", bytes(range(0x40, 0x60)))  # deliberately not published
PLAINTEXT = b"Bastion artifact vector: 3 chunks here"[:40].ljust(40, b".")
OTHER_PLAINTEXT = b"A different artifact, also in 3 chunks!!"
# For each invalid vector, a fragment of the message Bastion gives: it pins *which* check
# refuses the vector, so that a vector cannot pass by failing for an unintended reason.
MESSAGES = {
    "bad-magic": "bad magic",
    "bad-version": "unsupported format version 2",
    "bad-algorithm": "unsupported algorithm 2",
    "bad-reserved": "reserved header field is 1",
    "bad-chunk-size": "chunk size 8 outside",
    "bad-kek-id-length": "key id length 0",
    "bad-kek-id-chars": "key id has characters outside",
    "bad-wrapped-length": "wrapped key length 0",
    "bad-commitment": "key commitment does not match",
    "truncated-header": "truncated in the fixed header",
    "truncated-key-slot": "truncated in the key slot",
    "truncated-no-chunks": "truncated at chunk 0",
    "truncated-mid-chunk": "truncated at chunk 1",
    "truncated-at-boundary": "chunk 1 does not authenticate",
    "truncated-tag": "chunk 2 does not authenticate",
    "bitflip-nonce-prefix": "data key does not unwrap",
    "bitflip-commitment": "data key does not unwrap",
    "bitflip-wrapped-key": "data key does not unwrap",
    "bitflip-chunk": "chunk 1 does not authenticate",
    "bitflip-tag": "chunk 2 does not authenticate",
    "chunks-reordered": "chunk 0 does not authenticate",
    "chunk-spliced": "chunk 1 does not authenticate",
    "header-swapped": "data key does not unwrap",
    "wrapped-key-swapped": "data key does not unwrap",
    "header-and-slot-swapped": "chunk 0 does not authenticate",
    "kek-id-edited": "data key does not unwrap",
    "unknown-key": "which the keyring lacks",
    "trailing-bytes": "chunk 2 does not authenticate",
    "trailing-chunk": "chunk 2 does not authenticate",
    "no-final-flag": "chunk 2 does not authenticate",
    "empty-final-after-data": "malformed chunk 2",
    "replayed-under-another-digest": "does not hash to its digest",
}


def _fixed_header(
    dek: bytes,
    nonce_prefix: bytes,
    *,
    chunk_size: int = CHUNK,
    version: int = 1,
    algorithm: int = 1,
    reserved: int = 0,
    magic: bytes = b"BSTN",
    commit_dek: bytes | None = None,
) -> bytes:
    prefix = struct.pack(">4sBBHI8s", magic, version, algorithm, reserved, chunk_size, nonce_prefix)
    commit = hmac.new(
        commit_dek or dek, b"bastion/artifact/v1/commit" + prefix, hashlib.sha256
    ).digest()
    return prefix + commit


def _key_slot(fixed: bytes, kek_id: str, kek: bytes, dek: bytes, wrap_nonce: bytes) -> bytes:
    kid = kek_id.encode("ascii")
    aad = b"bastion/artifact/v1/dek" + hashlib.sha256(fixed).digest() + kid
    wrapped = wrap_nonce + AESGCM(kek).encrypt(wrap_nonce, dek, aad)
    return bytes([len(kid)]) + kid + struct.pack(">H", len(wrapped)) + wrapped


def _chunks(
    fixed: bytes,
    dek: bytes,
    plaintext: bytes,
    *,
    chunk_size: int = CHUNK,
    final_flags: list[bool] | None = None,
) -> list[bytes]:
    nonce_prefix = fixed[12:20]
    header_hash = hashlib.sha256(fixed).digest()
    pieces = [plaintext[i : i + chunk_size] for i in range(0, len(plaintext), chunk_size)] or [b""]
    flags = final_flags or [i == len(pieces) - 1 for i in range(len(pieces))]
    out = []
    for index, (piece, final) in enumerate(zip(pieces, flags, strict=True)):
        nonce = nonce_prefix + struct.pack(">I", index)
        aad = header_hash + struct.pack(">QB", index, final)
        out.append(AESGCM(dek).encrypt(nonce, piece, aad))
    return out


def _blob(
    plaintext: bytes, seed: int, *, kek_id: str = "kek-vectors-1", kek: bytes | None = None
) -> tuple[bytes, bytes, list[bytes]]:
    """(fixed header, key slot, chunks) with a data key and nonces derived from ``seed``."""
    dek = hashlib.sha256(b"vector dek %d" % seed).digest()
    nonce_prefix = hashlib.sha256(b"vector nonce %d" % seed).digest()[:8]
    wrap_nonce = hashlib.sha256(b"vector wrap %d" % seed).digest()[:12]
    fixed = _fixed_header(dek, nonce_prefix)
    slot = _key_slot(fixed, kek_id, kek or KEKS[kek_id], dek, wrap_nonce)
    return fixed, slot, _chunks(fixed, dek, plaintext)


def main() -> None:
    for old in HERE.glob("*.blob"):
        old.unlink()
    vectors: list[dict[str, str]] = []
    digest = hashlib.sha256(PLAINTEXT).hexdigest()

    def add(name: str, data: bytes, expect: str, note: str, *, of: bytes = PLAINTEXT) -> None:
        (HERE / name).write_bytes(data)
        entry = {
            "name": name.removesuffix(".blob"),
            "file": name,
            "digest": hashlib.sha256(of).hexdigest(),
            "expect": expect,
            "note": note,
        }
        if expect == "ok":
            entry["plaintext_hex"] = of.hex()
        else:
            entry["message"] = MESSAGES[entry["name"]]
        vectors.append(entry)

    (HERE / "plaintext.bin").write_bytes(PLAINTEXT)
    (HERE / "other-plaintext.bin").write_bytes(OTHER_PLAINTEXT)
    fixed, slot, chunks = _blob(PLAINTEXT, 1)
    valid = fixed + slot + b"".join(chunks)
    o_fixed, o_slot, o_chunks = _blob(OTHER_PLAINTEXT, 2)
    dek = hashlib.sha256(b"vector dek 1").digest()
    body = len(fixed) + len(slot)

    add("valid.blob", valid, "ok", "plaintext.bin, 40 bytes, in chunks of 16, 16 and 8")
    f, s, c = _blob(PLAINTEXT[:32], 3)
    add(
        "valid-full-last.blob",
        f + s + b"".join(c),
        "ok",
        "32 bytes: the final chunk is a full one",
        of=PLAINTEXT[:32],
    )
    f, s, c = _blob(b"", 4)
    add("empty.blob", f + s + b"".join(c), "ok", "empty plaintext: one empty final chunk", of=b"")
    rewrapped = (
        fixed
        + _key_slot(fixed, "kek-vectors-2", KEKS["kek-vectors-2"], dek, b"\x07" * 12)
        + b"".join(chunks)
    )
    add("rewrapped.blob", rewrapped, "ok", "valid.blob after rotation: only the key slot differs")
    add(
        "other.blob",
        o_fixed + o_slot + b"".join(o_chunks),
        "ok",
        "a second blob under the same KEK, source of the swaps below",
        of=OTHER_PLAINTEXT,
    )

    # -- header fields the parser must refuse ------------------------------------------
    nonce_prefix = fixed[12:20]
    for name, kwargs, note in [
        ("bad-magic.blob", {"magic": b"BSTX"}, "magic is not BSTN"),
        ("bad-version.blob", {"version": 2}, "format version 2"),
        ("bad-algorithm.blob", {"algorithm": 2}, "algorithm 2"),
        ("bad-reserved.blob", {"reserved": 1}, "reserved field not zero"),
        ("bad-chunk-size.blob", {"chunk_size": 8}, "chunk size below 16"),
    ]:
        bad = _fixed_header(dek, nonce_prefix, **kwargs)  # type: ignore[arg-type]
        add(
            name,
            bad
            + _key_slot(bad, "kek-vectors-1", KEKS["kek-vectors-1"], dek, b"\x05" * 12)
            + b"".join(chunks),
            "IntegrityError",
            note + " (slot re-wrapped to match, so only the parser can refuse)",
        )
    add(
        "bad-kek-id-length.blob",
        fixed + b"\x00" + slot[1 + 13 :] + b"".join(chunks),
        "IntegrityError",
        "key id length 0",
    )
    add(
        "bad-kek-id-chars.blob",
        fixed + slot[:1] + b"kek/vectors-1" + slot[14:] + b"".join(chunks),
        "IntegrityError",
        "key id with a '/'",
    )
    add(
        "bad-wrapped-length.blob",
        fixed + slot[:14] + b"\x00\x00" + b"".join(chunks),
        "IntegrityError",
        "wrapped key length 0",
    )
    add(
        "bad-commitment.blob",
        _bad_commitment(dek, nonce_prefix),
        "IntegrityError",
        "commitment made with another key; the slot wraps the right DEK over this header",
    )

    # -- truncation ---------------------------------------------------------------------
    add("truncated-header.blob", valid[:30], "IntegrityError", "cut inside the fixed header")
    add(
        "truncated-key-slot.blob",
        valid[: len(fixed) + 20],
        "IntegrityError",
        "cut inside the key slot",
    )
    add("truncated-no-chunks.blob", valid[:body], "IntegrityError", "header and slot, no chunk")
    add(
        "truncated-mid-chunk.blob",
        valid[: body + 32 + 5],
        "IntegrityError",
        "cut 5 bytes into chunk 1",
    )
    add(
        "truncated-at-boundary.blob",
        valid[: body + 64],
        "IntegrityError",
        "final chunk dropped: chunk 1 was not written as final",
    )
    add("truncated-tag.blob", valid[:-3], "IntegrityError", "last 3 tag bytes dropped")

    # -- bit flips ------------------------------------------------------------------------
    def flip(at: int) -> bytes:
        out = bytearray(valid)
        out[at] ^= 0x01
        return bytes(out)

    add("bitflip-nonce-prefix.blob", flip(15), "IntegrityError", "bit 0 of nonce prefix byte 3")
    add("bitflip-commitment.blob", flip(40), "IntegrityError", "a bit of the key commitment")
    add("bitflip-wrapped-key.blob", flip(body - 5), "IntegrityError", "a bit of the wrapped key")
    add("bitflip-chunk.blob", flip(body + 32 + 3), "IntegrityError", "a ciphertext bit, chunk 1")
    add("bitflip-tag.blob", flip(len(valid) - 1), "IntegrityError", "a bit of the final tag")

    # -- rearranged or swapped pieces -------------------------------------------------------
    add(
        "chunks-reordered.blob",
        fixed + slot + chunks[1] + chunks[0] + chunks[2],
        "IntegrityError",
        "chunks 0 and 1 swapped",
    )
    add(
        "chunk-spliced.blob",
        fixed + slot + chunks[0] + o_chunks[1] + chunks[2],
        "IntegrityError",
        "chunk 1 taken from other.blob (same KEK)",
    )
    add(
        "header-swapped.blob",
        o_fixed + slot + b"".join(chunks),
        "IntegrityError",
        "fixed header of other.blob",
    )
    add(
        "wrapped-key-swapped.blob",
        fixed + o_slot + b"".join(chunks),
        "IntegrityError",
        "key slot of other.blob",
    )
    add(
        "header-and-slot-swapped.blob",
        o_fixed + o_slot + b"".join(chunks),
        "IntegrityError",
        "header and key slot of other.blob: the data key opens, the chunks do not",
    )
    add(
        "kek-id-edited.blob",
        fixed + slot.replace(b"kek-vectors-1", b"kek-vectors-2") + b"".join(chunks),
        "IntegrityError",
        "key id changed to another key in the ring",
    )
    f, s, c = _blob(PLAINTEXT, 5, kek_id=MISSING_KEK[0], kek=MISSING_KEK[1])
    add(
        "unknown-key.blob",
        f + s + b"".join(c),
        "UnknownKeyError",
        "wrapped under a KEK that the vector keyring does not hold",
    )
    add("trailing-bytes.blob", valid + b"\x00", "IntegrityError", "one byte appended")
    add("trailing-chunk.blob", valid + chunks[2], "IntegrityError", "final chunk appended twice")
    forged = _chunks(fixed, dek, PLAINTEXT, final_flags=[False, False, False])
    add(
        "no-final-flag.blob",
        fixed + slot + b"".join(forged),
        "IntegrityError",
        "every chunk written as not final (a writer that stopped early)",
    )
    extra = _chunks(fixed, dek, PLAINTEXT[:32], final_flags=[False, False])
    empty_final = AESGCM(dek).encrypt(
        nonce_prefix + struct.pack(">I", 2),
        b"",
        hashlib.sha256(fixed).digest() + struct.pack(">QB", 2, 1),
    )
    add(
        "empty-final-after-data.blob",
        fixed + slot + b"".join(extra) + empty_final,
        "IntegrityError",
        "an empty final chunk after data, which a writer never makes",
        of=PLAINTEXT[:32],
    )
    vectors.append(
        {
            "name": "replayed-under-another-digest",
            "file": "other.blob",
            "digest": digest,
            "expect": "IntegrityError",
            "note": "replay: other.blob presented under valid.blob's digest",
            "message": MESSAGES["replayed-under-another-digest"],
        }
    )

    manifest = {
        "format": "bastion-artifact-vectors",
        "version": 1,
        "chunk_size": CHUNK,
        "keys": {kid: key.hex() for kid, key in KEKS.items()},
        "wrap": "wrapped = nonce(12) || AES-256-GCM(KEK, nonce, DEK, aad), as LocalKeyring",
        "vectors": vectors,
    }
    (HERE / "vectors.json").write_text(json.dumps(manifest, indent=1) + "\n")


def _bad_commitment(dek: bytes, nonce_prefix: bytes) -> bytes:
    fixed = _fixed_header(dek, nonce_prefix, commit_dek=b"\x01" * 32)
    slot = _key_slot(fixed, "kek-vectors-1", KEKS["kek-vectors-1"], dek, b"\x09" * 12)
    return fixed + slot + b"".join(_chunks(fixed, dek, PLAINTEXT))


if __name__ == "__main__":
    main()
