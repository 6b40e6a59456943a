"""Forged, tampered and replayed signatures: every one is refused, and none returns False.

A verifier that is handed a forgery raises :class:`SignatureError` (no trusted key signed
these bytes) or :class:`IntegrityError` (the envelope or statement is malformed, or says
something other than what we expected). The payload is never parsed before that.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.errors import IntegrityError, SignatureError
from bastion.security.keys import LocalKeyring
from bastion.security.signing import (
    INTOTO_PAYLOAD_TYPE,
    MAX_SIGNATURES,
    STATEMENT_TYPE,
    make_statement,
    sign_envelope,
    sign_statement,
    trusted_keys,
    verify_envelope,
    verify_statement,
)

PREDICATE = "https://bastion.dev/provenance/stage/v1"
MODEL = hashlib.sha256(b"the model we trained").hexdigest()
OTHER = hashlib.sha256(b"a model someone swapped in").hexdigest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _signed(keyring: LocalKeyring, subjects: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    statement = make_statement(subjects or [("model.skops", MODEL)], PREDICATE, {"stage": "train"})
    return sign_statement(keyring, statement)


# -- tampering ----------------------------------------------------------------------------


def test_tampered_payload_is_refused(keyring: LocalKeyring) -> None:
    envelope = _signed(keyring)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["subject"][0]["digest"]["sha256"] = OTHER
    envelope["payload"] = _b64(json.dumps(statement).encode())
    with pytest.raises(SignatureError):
        verify_statement(envelope, trusted_keys(keyring))


def test_tampered_payload_type_is_refused(keyring: LocalKeyring) -> None:
    envelope = sign_envelope(keyring, "application/vnd.bastion.config+json", b'{"a":1}')
    envelope["payloadType"] = INTOTO_PAYLOAD_TYPE
    with pytest.raises(SignatureError):
        verify_envelope(envelope, trusted_keys(keyring))


def test_statement_under_another_payload_type_is_refused(keyring: LocalKeyring) -> None:
    # Validly signed, but not as an in-toto statement: type confusion is refused.
    payload = base64.b64decode(_signed(keyring)["payload"])
    envelope = sign_envelope(keyring, "application/json", payload)
    with pytest.raises(IntegrityError, match="payloadType"):
        verify_statement(envelope, trusted_keys(keyring))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_payload_bit_is_refused(
    module_keyring: LocalKeyring, position: int, bit: int
) -> None:
    envelope = _signed(module_keyring)
    payload = bytearray(base64.b64decode(envelope["payload"]))
    payload[position % len(payload)] ^= 1 << bit
    envelope["payload"] = _b64(bytes(payload))
    with pytest.raises(SignatureError):
        verify_statement(envelope, trusted_keys(module_keyring))


# -- keys ---------------------------------------------------------------------------------


def test_signature_by_another_key_under_a_trusted_keyid_is_refused(
    keyring: LocalKeyring, other_keyring: LocalKeyring
) -> None:
    forged = _signed(other_keyring)
    forged["signatures"][0]["keyid"] = keyring.active_signing_key()
    with pytest.raises(SignatureError, match="does not verify"):
        verify_statement(forged, trusted_keys(keyring))


def test_signature_by_an_untrusted_keyid_is_refused(
    keyring: LocalKeyring, other_keyring: LocalKeyring
) -> None:
    forged = _signed(other_keyring)
    with pytest.raises(SignatureError, match="untrusted keys"):
        verify_statement(forged, trusted_keys(keyring))


def test_no_trusted_keys_means_nothing_verifies(keyring: LocalKeyring) -> None:
    with pytest.raises(SignatureError):
        verify_statement(_signed(keyring), {})


def test_keyless_signature_from_a_stranger_is_refused(
    keyring: LocalKeyring, other_keyring: LocalKeyring
) -> None:
    forged = _signed(other_keyring)
    del forged["signatures"][0]["keyid"]
    with pytest.raises(SignatureError, match="does not verify"):
        verify_statement(forged, trusted_keys(keyring))


def test_extra_untrusted_signature_does_not_help_a_forgery(
    keyring: LocalKeyring, other_keyring: LocalKeyring
) -> None:
    forged = _signed(other_keyring)
    forged["signatures"].append({"keyid": keyring.active_signing_key(), "sig": _b64(bytes(64))})
    with pytest.raises(SignatureError):
        verify_statement(forged, trusted_keys(keyring))


# -- swapping and replay ------------------------------------------------------------------


def test_signature_swapped_from_another_envelope_is_refused(keyring: LocalKeyring) -> None:
    ours = _signed(keyring, [("model.skops", MODEL)])
    theirs = _signed(keyring, [("model.skops", OTHER)])
    ours["signatures"] = copy.deepcopy(theirs["signatures"])
    with pytest.raises(SignatureError):
        verify_statement(ours, trusted_keys(keyring))


def test_genuine_statement_about_another_artifact_is_refused(keyring: LocalKeyring) -> None:
    # Replay: a real, valid statement, but about a different model than the one loaded.
    envelope = _signed(keyring, [("model.skops", OTHER)])
    with pytest.raises(IntegrityError, match=r"does not cover subject 'model\.skops'"):
        verify_statement(envelope, trusted_keys(keyring), expected_subjects={"model.skops": MODEL})


def test_right_digest_under_another_name_is_refused(keyring: LocalKeyring) -> None:
    envelope = _signed(keyring, [("decoy.bin", MODEL)])
    with pytest.raises(IntegrityError, match="does not cover"):
        verify_statement(envelope, trusted_keys(keyring), expected_subjects={"model.skops": MODEL})


# -- malformed envelopes ------------------------------------------------------------------


@pytest.mark.parametrize(
    "edit",
    [
        lambda e: e.pop("signatures"),
        lambda e: e.__setitem__("signatures", []),
        lambda e: e.__setitem__("signatures", None),
    ],
    ids=["missing", "empty", "null"],
)
def test_envelope_without_signatures_is_refused(keyring: LocalKeyring, edit: Any) -> None:
    envelope = _signed(keyring)
    edit(envelope)
    with pytest.raises(SignatureError, match="no signatures"):
        verify_statement(envelope, trusted_keys(keyring))


@pytest.mark.parametrize(
    "edit",
    [
        lambda e: e.pop("payload"),
        lambda e: e.__setitem__("payload", "%%%not base64%%%"),
        lambda e: e.__setitem__("payloadType", 7),
        lambda e: e["signatures"][0].__setitem__("sig", "@@"),
        lambda e: e["signatures"][0].__setitem__("keyid", 1),
        lambda e: e["signatures"].__setitem__(0, "sig"),
        lambda e: e.__setitem__("signatures", e["signatures"] * (MAX_SIGNATURES + 1)),
    ],
    ids=["no-payload", "bad-base64", "type-not-str", "bad-sig", "keyid-int", "sig-str", "flood"],
)
def test_malformed_envelope_is_an_integrity_error(keyring: LocalKeyring, edit: Any) -> None:
    envelope = _signed(keyring)
    edit(envelope)
    with pytest.raises(IntegrityError):
        verify_envelope(envelope, trusted_keys(keyring))


def test_truncated_signature_is_refused(keyring: LocalKeyring) -> None:
    envelope = _signed(keyring)
    sig = base64.b64decode(envelope["signatures"][0]["sig"])
    envelope["signatures"][0]["sig"] = _b64(sig[:32])
    with pytest.raises(SignatureError):
        verify_envelope(envelope, trusted_keys(keyring))


def test_duplicate_keys_in_a_signed_statement_are_refused(keyring: LocalKeyring) -> None:
    # Two JSON parsers may disagree on which "subject" wins; we refuse to guess.
    head = f'{{"_type":"{STATEMENT_TYPE}","predicateType":"{PREDICATE}","predicate":{{}},'
    subject = '"subject":[{"name":"m","digest":{"sha256":"%s"}}]'
    payload = (head + subject % OTHER + "," + subject % MODEL + "}").encode()
    envelope = sign_envelope(keyring, INTOTO_PAYLOAD_TYPE, payload)
    with pytest.raises(IntegrityError, match="duplicate key"):
        verify_statement(envelope, trusted_keys(keyring), expected_subjects={"m": MODEL})


@pytest.mark.parametrize(
    "statement",
    [
        b"not json",
        b"[]",
        b'{"_type":"https://in-toto.io/Statement/v0.1","subject":[],"predicateType":"p"}',
        b'{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"p"}',
        b'{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"m","digest":'
        b'{"sha256":"ABC"}}],"predicateType":"p"}',
        b'{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"m","digest":'
        b'{"sha256":"' + MODEL.encode() + b'"}}],"predicateType":"p","predicate":[]}',
        b'{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"m","digest":'
        b'{"sha256":"' + MODEL.encode() + b'"}}],"predicateType":"p","predicate":{"x":NaN}}',
    ],
    ids=["not-json", "array", "old-type", "no-subjects", "bad-digest", "bad-predicate", "nan"],
)
def test_signed_but_malformed_statement_is_refused(keyring: LocalKeyring, statement: bytes) -> None:
    envelope = sign_envelope(keyring, INTOTO_PAYLOAD_TYPE, statement)
    with pytest.raises(IntegrityError):
        verify_statement(envelope, trusted_keys(keyring))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    envelope=st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(
                    st.sampled_from(["payload", "payloadType", "signatures", "keyid", "sig", "x"]),
                    inner,
                    max_size=4,
                )
            ),
            max_leaves=12,
        ),
    )
)
def test_hostile_envelopes_only_ever_raise_integrity_errors(
    module_keyring: LocalKeyring, envelope: Any
) -> None:
    with pytest.raises(IntegrityError):
        verify_statement(envelope, trusted_keys(module_keyring))
