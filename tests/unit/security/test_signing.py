"""Unit tests of bastion.security.signing: DSSE PAE and envelopes, in-toto statements, store."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.errors import ConfigError, IntegrityError, NotFound, SignatureError
from bastion.security import signing
from bastion.security.keys import LocalKeyring
from bastion.security.signing import (
    INTOTO_PAYLOAD_TYPE,
    STATEMENT_TYPE,
    StatementStore,
    make_statement,
    pae,
    sign_envelope,
    sign_statement,
    trusted_keys,
    verify_envelope,
    verify_statement,
)
from bastion.store.db import make_engine, migrate, statements

PREDICATE = "https://bastion.dev/provenance/stage/v1"
DIGEST_A = hashlib.sha256(b"model bytes").hexdigest()
DIGEST_B = hashlib.sha256(b"training data").hexdigest()

# RFC 8032 section 7.1, TEST 1: a fixed Ed25519 key, so the vector below is reproducible.
RFC8032_SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC8032_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
# DSSE envelope over {"_type":"https://in-toto.io/Statement/v1"} signed with that key.
# Ed25519 is deterministic; computed once and cross-checked with the secure-systems-lab
# dsse test vectors ("single-signature").
FIXED_ENVELOPE = {
    "payload": "eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjEifQ==",
    "payloadType": "application/vnd.in-toto+json",
    "signatures": [
        {
            "keyid": "A",
            "sig": "2WAfaHm5jluo0w+0rk8uVkluELJYWjSmU9x7EUzx+AyteDGJ4/nq"
            "yJXfmAUVFIAoQafWm7AxBZNw5M9ixNHiCA==",
        }
    ],
}


@pytest.fixture
def keyring(tmp_path: Path) -> LocalKeyring:
    return LocalKeyring.create(tmp_path / "keyring.json", "a long test passphrase", scrypt_log_n=14)


@pytest.fixture
def store(tmp_path: Path) -> StatementStore:
    engine = make_engine("sqlite:///" + str(tmp_path / "m.db"))
    migrate(engine)
    return StatementStore(engine)


def _rfc8032_public() -> dict[str, Ed25519PublicKey]:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(RFC8032_SEED)).public_key()
    assert key.public_bytes_raw().hex() == RFC8032_PUBLIC
    return {"A": key}


# -- PAE ----------------------------------------------------------------------------------


def test_pae_matches_the_dsse_spec_example() -> None:
    # protocol.md, "Test Vectors": SERIALIZED_BODY "hello world", PAYLOAD_TYPE
    # "http://example.com/HelloWorld".
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters_and_keeps_an_empty_body() -> None:
    assert pae("application/vnd.exämple+json", b"").startswith(b"DSSEv1 29 ")
    assert pae(INTOTO_PAYLOAD_TYPE, b"") == b"DSSEv1 28 application/vnd.in-toto+json 0 "


@settings(max_examples=300)
@given(st.text(max_size=20), st.binary(max_size=20), st.text(max_size=20), st.binary(max_size=20))
def test_pae_is_injective(t1: str, b1: bytes, t2: str, b2: bytes) -> None:
    if (t1, b1) != (t2, b2):
        assert pae(t1, b1) != pae(t2, b2)


# -- envelopes ----------------------------------------------------------------------------


def test_fixed_ed25519_envelope_vector_verifies() -> None:
    trusted = _rfc8032_public()
    payload_type, payload = verify_envelope(FIXED_ENVELOPE, trusted)
    assert payload_type == INTOTO_PAYLOAD_TYPE
    assert payload == b'{"_type":"https://in-toto.io/Statement/v1"}'


def test_envelope_round_trip_in_every_input_form(keyring: LocalKeyring) -> None:
    envelope = sign_envelope(keyring, "application/vnd.bastion.test+json", b'{"x":1}')
    assert set(envelope) == {"payloadType", "payload", "signatures"}
    assert envelope["signatures"][0]["keyid"] == keyring.active_signing_key()
    trusted = trusted_keys(keyring)
    text = json.dumps(envelope)
    for form in (envelope, text, text.encode()):
        assert verify_envelope(form, trusted) == ("application/vnd.bastion.test+json", b'{"x":1}')


def test_url_safe_unpadded_base64_is_accepted(keyring: LocalKeyring) -> None:
    payload = bytes(range(256))
    envelope = sign_envelope(keyring, "application/octet-stream", payload)

    def url(text: str) -> str:
        return base64.urlsafe_b64encode(base64.b64decode(text)).rstrip(b"=").decode()

    envelope["payload"] = url(envelope["payload"])
    envelope["signatures"][0]["sig"] = url(envelope["signatures"][0]["sig"])
    assert verify_envelope(envelope, trusted_keys(keyring))[1] == payload


def test_signature_without_keyid_is_tried_against_every_trusted_key(
    keyring: LocalKeyring,
) -> None:
    envelope = sign_envelope(keyring, "application/octet-stream", b"data")
    del envelope["signatures"][0]["keyid"]
    assert verify_envelope(envelope, trusted_keys(keyring))[1] == b"data"


def test_sign_envelope_validates_its_arguments(keyring: LocalKeyring) -> None:
    with pytest.raises(ConfigError, match="payload_type"):
        sign_envelope(keyring, "", b"x")
    with pytest.raises(ConfigError, match="payload"):
        sign_envelope(keyring, "t", "not bytes")  # type: ignore[arg-type]


def test_trusted_keys_are_every_signing_key_and_no_kek(keyring: LocalKeyring) -> None:
    first = keyring.active_signing_key()
    second = keyring.add_signing_key()
    keyring.add_kek()
    assert set(trusted_keys(keyring)) == {first, second}


def test_old_envelopes_still_verify_after_rotation(keyring: LocalKeyring) -> None:
    old = sign_envelope(keyring, "application/octet-stream", b"before")
    new_key = keyring.add_signing_key()
    new = sign_envelope(keyring, "application/octet-stream", b"after")
    assert new["signatures"][0]["keyid"] == new_key != old["signatures"][0]["keyid"]
    trusted = trusted_keys(keyring)
    assert verify_envelope(old, trusted)[1] == b"before"
    assert verify_envelope(new, trusted)[1] == b"after"
    reopened = LocalKeyring.open(keyring._path, "a long test passphrase")
    assert verify_envelope(old, trusted_keys(reopened))[1] == b"before"


# -- statements ---------------------------------------------------------------------------


def test_statement_has_the_in_toto_v1_shape() -> None:
    statement = make_statement([("model.skops", DIGEST_A)], PREDICATE, {"stage": "train"})
    assert statement == {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": "model.skops", "digest": {"sha256": DIGEST_A}}],
        "predicateType": PREDICATE,
        "predicate": {"stage": "train"},
    }


def test_statement_round_trip_with_expected_subjects(keyring: LocalKeyring) -> None:
    statement = make_statement(
        [("model.skops", DIGEST_A), ("train.parquet", DIGEST_B)], PREDICATE, {"seed": 7}
    )
    envelope = sign_statement(keyring, statement)
    assert envelope["payloadType"] == INTOTO_PAYLOAD_TYPE
    verified = verify_statement(
        envelope, trusted_keys(keyring), expected_subjects={"model.skops": DIGEST_A}
    )
    assert verified == statement


@pytest.mark.parametrize(
    ("subjects", "predicate_type", "predicate", "field_name"),
    [
        ([], PREDICATE, {}, "subjects"),
        ([("m", DIGEST_A.upper())], PREDICATE, {}, r"subjects\[0\].digest"),
        ([("m", DIGEST_A[:-1])], PREDICATE, {}, r"subjects\[0\].digest"),
        ([("", DIGEST_A)], PREDICATE, {}, r"subjects\[0\].name"),
        ([("m", DIGEST_A)], "", {}, "predicate_type"),
        ([("m", DIGEST_A)], PREDICATE, {"x": object()}, "predicate"),
        ([("m", DIGEST_A)], PREDICATE, {"x": float("nan")}, "predicate"),
    ],
)
def test_bad_statement_input_is_named(
    subjects: list[tuple[str, str]],
    predicate_type: str,
    predicate: dict[str, object],
    field_name: str,
) -> None:
    with pytest.raises(ConfigError, match=rf"^{field_name}"):
        make_statement(subjects, predicate_type, predicate)


def test_sign_statement_refuses_a_statement_of_the_wrong_shape(keyring: LocalKeyring) -> None:
    with pytest.raises(ConfigError, match="in-toto"):
        sign_statement(keyring, {"_type": STATEMENT_TYPE, "subject": []})


def test_expected_subject_digests_are_validated(keyring: LocalKeyring) -> None:
    envelope = sign_statement(keyring, make_statement([("m", DIGEST_A)], PREDICATE, {}))
    with pytest.raises(ConfigError, match="expected_subjects"):
        verify_statement(envelope, trusted_keys(keyring), expected_subjects={"m": "abc"})


# -- the statement store ------------------------------------------------------------------


def test_store_adds_gets_and_finds_by_subject(keyring: LocalKeyring, store: StatementStore) -> None:
    trusted = trusted_keys(keyring)
    one = sign_statement(keyring, make_statement([("data", DIGEST_B)], PREDICATE, {"n": 1}))
    two = sign_statement(
        keyring, make_statement([("model", DIGEST_A), ("data", DIGEST_B)], PREDICATE, {"n": 2})
    )
    id_one, id_two = store.add(one, trusted=trusted), store.add(two, trusted=trusted)
    canonical = json.dumps(one, sort_keys=True, separators=(",", ":")).encode()
    assert id_one == hashlib.sha256(canonical).hexdigest()
    assert store.get(id_one) == one
    assert store.add(json.dumps(one), trusted=trusted) == id_one  # idempotent
    assert {json.dumps(e, sort_keys=True) for e in store.for_subject(DIGEST_B)} == {
        json.dumps(e, sort_keys=True) for e in (one, two)
    }
    assert store.for_subject(DIGEST_A) == [two]
    assert store.for_subject(hashlib.sha256(b"other").hexdigest()) == []
    assert dict(store.all()) == {id_one: one, id_two: two}


def test_store_ids_do_not_depend_on_the_base64_alphabet(
    keyring: LocalKeyring, store: StatementStore
) -> None:
    trusted = trusted_keys(keyring)
    envelope = sign_statement(keyring, make_statement([("m", DIGEST_A)], PREDICATE, {"k": "~~~"}))
    variant = json.loads(json.dumps(envelope))
    variant["payload"] = base64.urlsafe_b64encode(base64.b64decode(envelope["payload"])).decode()
    variant["unknown"] = "ignored"
    assert store.add(envelope, trusted=trusted) == store.add(variant, trusted=trusted)


def test_store_refuses_what_does_not_verify(
    keyring: LocalKeyring, store: StatementStore, tmp_path: Path
) -> None:
    stranger = LocalKeyring.create(tmp_path / "k2.json", "a long test passphrase", scrypt_log_n=14)
    envelope = sign_statement(stranger, make_statement([("m", DIGEST_A)], PREDICATE, {}))
    with pytest.raises(SignatureError):
        store.add(envelope, trusted=trusted_keys(keyring))
    assert list(store.all()) == []


def test_store_lookups_validate_and_report_absence(store: StatementStore) -> None:
    with pytest.raises(ConfigError, match="digest"):
        store.for_subject("not-a-digest")
    with pytest.raises(ConfigError, match="statement id"):
        store.get("../../etc/passwd")
    with pytest.raises(NotFound):
        store.get(DIGEST_A)


def test_store_detects_an_envelope_edited_at_rest(
    keyring: LocalKeyring, store: StatementStore
) -> None:
    envelope = sign_statement(keyring, make_statement([("m", DIGEST_A)], PREDICATE, {}))
    statement_id = store.add(envelope, trusted=trusted_keys(keyring))
    edited = json.dumps(dict(envelope, payloadType="text/plain"), sort_keys=True)
    with store._engine.begin() as conn:
        conn.execute(sa.update(statements).values(envelope=edited))
    with pytest.raises(IntegrityError, match="does not match its id"):
        store.get(statement_id)
    with pytest.raises(IntegrityError):
        store.for_subject(DIGEST_A)


def test_store_pages_through_many_statements(
    keyring: LocalKeyring, store: StatementStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(signing, "_PAGE", 3)
    trusted = trusted_keys(keyring)
    ids = {
        store.add(
            sign_statement(keyring, make_statement([("m", DIGEST_A)], PREDICATE, {"i": i})),
            trusted=trusted,
        )
        for i in range(7)
    }
    seen = [statement_id for statement_id, _ in store.all()]
    assert seen == sorted(ids)
    assert len(store.for_subject(DIGEST_A)) == 7


def test_store_on_each_database(keyring: LocalKeyring, database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    store = StatementStore(engine)
    envelope = sign_statement(keyring, make_statement([("m", DIGEST_A)], PREDICATE, {"db": 1}))
    statement_id = store.add(envelope, trusted=trusted_keys(keyring))
    assert store.add(envelope, trusted=trusted_keys(keyring)) == statement_id
    assert store.get(statement_id) == envelope
    assert store.for_subject(DIGEST_A) == [envelope]
    engine.dispose()
