"""The checked-in artifact vectors (tests/vectors/artifact) give exactly the outcome their
manifest names: the plaintext for valid blobs, the named error class for the others."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from bastion.errors import IntegrityError
from bastion.store.blob import BlobReader
from tests.helpers.keys import FixedKeyring

HERE = Path(__file__).resolve().parents[2] / "vectors" / "artifact"
MANIFEST: dict[str, Any] = json.loads((HERE / "vectors.json").read_text())
VECTORS: list[dict[str, str]] = MANIFEST["vectors"]


def _read(vector: dict[str, str]) -> bytes:
    keys = FixedKeyring(MANIFEST["keys"])
    fh = (HERE / vector["file"]).open("rb", buffering=0)
    with BlobReader(fh, keys, where=vector["file"], expected_digest=vector["digest"]) as reader:
        return reader.read()


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_gives_the_outcome_in_the_manifest(vector: dict[str, str]) -> None:
    if vector["expect"] == "ok":
        plaintext = bytes.fromhex(vector["plaintext_hex"])
        assert hashlib.sha256(plaintext).hexdigest() == vector["digest"]
        assert _read(vector) == plaintext
        return
    with pytest.raises(IntegrityError) as err:
        _read(vector)
    assert type(err.value).__name__ == vector["expect"]
    assert vector["message"] in str(err.value)
    assert vector["file"] in str(err.value)


def test_every_vector_file_is_in_the_manifest_and_every_entry_has_a_file() -> None:
    on_disk = {p.name for p in HERE.glob("*.blob")}
    listed = {v["file"] for v in VECTORS}
    assert on_disk == listed
    assert len({v["name"] for v in VECTORS}) == len(VECTORS)
    assert {v["expect"] for v in VECTORS} == {"ok", "IntegrityError", "UnknownKeyError"}


def test_the_plaintext_files_match_the_valid_vectors() -> None:
    by_name = {v["name"]: v for v in VECTORS}
    assert (HERE / "plaintext.bin").read_bytes().hex() == by_name["valid"]["plaintext_hex"]
    assert (HERE / "other-plaintext.bin").read_bytes().hex() == by_name["other"]["plaintext_hex"]
    assert len((HERE / "plaintext.bin").read_bytes()) == 40 and MANIFEST["chunk_size"] == 16
