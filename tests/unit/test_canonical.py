"""The one canonical-JSON encoder: fixed vectors for each on-disk format it serves, so a
change to its options (which would break stored MACs, signatures and cache keys) fails here."""

from __future__ import annotations

import hashlib
import json
import math

import pytest

from bastion._canonical import canonical_json, encoder

DOC = {"b": [1, 2.5, None, True], "a": "é✓", "c": {"z": 1, "y": ""}}


def test_strict_default_is_sorted_compact_utf8() -> None:
    assert canonical_json(DOC) == '{"a":"é✓","b":[1,2.5,null,true],"c":{"y":"","z":1}}'.encode()


def test_ascii_format_escapes_non_ascii() -> None:
    assert canonical_json(DOC, ascii=True) == (
        b'{"a":"\\u00e9\\u2713","b":[1,2.5,null,true],"c":{"y":"","z":1}}'
    )


@pytest.mark.parametrize(
    ("options", "legacy"),
    [
        # signed statements (security/signing.py before the move)
        ({}, {"ensure_ascii": False, "allow_nan": False}),
        # keyring MAC (security/keys.py)
        ({"ascii": True, "allow_nan": True}, {}),
        # access-state MAC (security/access_state.py)
        ({"allow_nan": True}, {"ensure_ascii": False}),
        # stage cache key and fingerprint (pipeline/runner.py)
        ({"ascii": True, "allow_nan": True, "default": str}, {"default": str}),
    ],
)
def test_each_format_matches_the_encoder_it_replaced(
    options: dict[str, object], legacy: dict[str, object]
) -> None:
    old = json.dumps(DOC, sort_keys=True, separators=(",", ":"), **legacy).encode()  # type: ignore[arg-type]
    assert canonical_json(DOC, **options) == old  # type: ignore[arg-type]


def test_cache_key_vector_is_stable() -> None:
    key = canonical_json(
        {"stage": "train", "cfg": {"α": 1}}, ascii=True, allow_nan=True, default=str
    )
    assert (
        hashlib.sha256(key).hexdigest()
        == hashlib.sha256(b'{"cfg":{"\\u03b1":1},"stage":"train"}').hexdigest()
    )


def test_strict_refuses_nan_and_unknown_objects() -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        canonical_json({"x": math.nan})
    with pytest.raises(TypeError):
        canonical_json({"x": object()})
    assert canonical_json({"x": math.nan}, allow_nan=True) == b'{"x":NaN}'


def test_encoders_are_built_once_per_option_set() -> None:
    assert encoder() is encoder()
    assert encoder(ascii=True) is not encoder()
