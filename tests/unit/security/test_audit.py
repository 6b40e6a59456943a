"""The audit log as its users see it: recording, paging, checkpoints, concurrency, failure.

Attacks on a stored log are in ``tests/security/test_audit_tamper.py``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from bastion.errors import (
    AuditChainError,
    AuditError,
    ConfigError,
    SignatureError,
    UnknownKeyError,
)
from bastion.security.audit import (
    CHECKPOINT_FORMAT,
    OUTCOMES,
    AuditEntry,
    AuditLog,
    Checkpoint,
    read_checkpoint,
)
from bastion.security.audit import entry as audit_entry
from bastion.security.audit import walk as audit_walk
from bastion.security.keys import LocalKeyring
from bastion.security.merkle import leaf_hash, merkle_root
from bastion.store.db import make_engine

# -- recording --------------------------------------------------------------------------------


def test_record_returns_gapless_seqs_and_the_log_verifies(log: AuditLog) -> None:
    seqs = [log.record("alice", "model.promote", f"model:m{i}") for i in range(12)]
    assert seqs == list(range(1, 13))
    report = log.verify()
    assert (report.entries, report.last_seq, report.checkpoints) == (12, 12, 2)
    assert log.head()[0] == 12


def test_submit_returns_a_future_of_the_seq(log: AuditLog) -> None:
    futures = [
        log.submit("svc", "model.predict", "deployment:d", details={"i": i}) for i in range(7)
    ]
    assert all(isinstance(f, Future) for f in futures)
    assert sorted(f.result(timeout=30) for f in futures) == list(range(1, 8))


def test_entries_store_exactly_what_was_recorded(log: AuditLog) -> None:
    details = {"z": [1, 2.5, None], "a": "é ✓ 😀", "nested": {"b": True}}
    seq = log.record("alice@example.org", "dataset.write", "dataset:adult/2", "denied", details)
    (entry,) = log.entries(start=seq, limit=1)
    assert (entry.seq, entry.actor, entry.action, entry.resource, entry.outcome) == (
        1,
        "alice@example.org",
        "dataset.write",
        "dataset:adult/2",
        "denied",
    )
    assert entry.details == details
    assert entry.details_json == json.dumps(
        details, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert entry.ts.endswith("+00:00") and len(entry.ts) == 32
    leaf = leaf_hash(entry.leaf_bytes())
    assert entry.chain == hashlib.sha256(bytes(32) + leaf).digest()


def test_entries_page_and_filter(log: AuditLog) -> None:
    for i in range(9):
        log.record("alice" if i % 2 else "bob", "read" if i % 3 else "write", f"r{i}")
    assert [e.seq for e in log.entries(start=3, limit=4)] == [3, 4, 5, 6]
    assert [e.seq for e in log.entries(actor="alice")] == [2, 4, 6, 8]
    assert [e.seq for e in log.entries(actor="bob", action="write")] == [1, 7]
    assert log.entries(start=100) == []
    with pytest.raises(ConfigError, match="limit"):
        log.entries(limit=0)
    with pytest.raises(ConfigError, match="start"):
        log.entries(start=-1)


def test_head_names_the_last_entry_and_its_chain(log: AuditLog) -> None:
    assert log.head() == (0, bytes(32))
    log.record("a", "b", "c")
    seq = log.record("a", "b", "c")
    (entry,) = log.entries(start=seq)
    assert log.head() == (seq, entry.chain)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"actor": ""}, "actor"),
        ({"actor": "x" * 129}, "actor"),
        ({"actor": "eve\nforged line"}, "actor"),
        ({"action": ""}, "action"),
        ({"action": "a\x00b"}, "action"),
        ({"resource": "r\x1e"}, "resource"),
        ({"resource": "\ud800"}, "resource"),
        ({"resource": 7}, "resource"),
        ({"outcome": "maybe"}, "outcome"),
        ({"details": {"x": object()}}, "details"),
        ({"details": {"x": float("nan")}}, "details"),
        ({"details": {"x": "\udfff"}}, "details"),
        ({"details": {"x": "y" * 70_000}}, "details"),
        ({"details": ["not", "a", "mapping"]}, "details"),
    ],
)
def test_bad_input_is_refused_naming_the_field(
    sqlite_engine: Engine, keys: LocalKeyring, kwargs: dict[str, Any], field: str
) -> None:
    args: dict[str, Any] = {"actor": "alice", "action": "act", "resource": "res"} | kwargs
    with AuditLog(sqlite_engine, keys) as audit:
        with pytest.raises(ConfigError, match=f"^{field}:"):
            audit.record(**args)
        with pytest.raises(ConfigError, match=f"^{field}:"):
            audit.submit(**args)
        assert audit.head()[0] == 0


def test_outcomes_are_a_small_documented_set() -> None:
    assert OUTCOMES == ("denied", "error", "failed", "ok", "started")


def test_checkpoint_every_must_be_positive(sqlite_engine: Engine, keys: LocalKeyring) -> None:
    with pytest.raises(ConfigError, match="checkpoint_every"):
        AuditLog(sqlite_engine, keys, checkpoint_every=0)


# -- record_in: atomic with the caller's work ---------------------------------------------------


def test_record_in_commits_with_the_callers_transaction(engine: Engine, log: AuditLog) -> None:
    log.record("a", "first", "r")
    with engine.begin() as conn:
        seq = log.record_in(conn, "alice", "token.revoke", "token:t1")
        seq2 = log.record_in(conn, "alice", "token.revoke", "token:t2")
    assert (seq, seq2) == (2, 3)
    assert log.record("a", "after", "r") == 4
    assert [e.action for e in log.entries()] == ["first", "token.revoke", "token.revoke", "after"]
    assert log.verify().entries == 4


def test_record_in_rolls_back_with_the_callers_transaction(engine: Engine, log: AuditLog) -> None:
    log.record("a", "first", "r")
    with pytest.raises(RuntimeError, match="action failed"), engine.begin() as conn:
        assert log.record_in(conn, "alice", "model.promote", "model:m") == 2
        raise RuntimeError("action failed")
    assert log.head()[0] == 1
    assert log.record("a", "next", "r") == 2  # the writer noticed the rollback
    assert [e.action for e in log.entries()] == ["first", "next"]
    assert log.verify().entries == 2


def test_record_in_needs_an_open_transaction(engine: Engine, log: AuditLog) -> None:
    with engine.connect() as conn, pytest.raises(ConfigError, match="conn"):
        log.record_in(conn, "a", "b", "c")


def test_record_in_crossing_a_multiple_writes_the_checkpoint(engine: Engine, log: AuditLog) -> None:
    for _ in range(4):
        log.record("a", "b", "c")
    with engine.begin() as conn:
        log.record_in(conn, "a", "b", "c")
    assert [c.tree_size for c in log.checkpoints()] == [5]
    log.verify()


# -- checkpoints --------------------------------------------------------------------------------


def test_a_checkpoint_is_signed_at_every_multiple(log: AuditLog, keys: LocalKeyring) -> None:
    futures = [log.submit("svc", "x", "y") for _ in range(23)]  # batched as the writer likes
    for f in futures:
        f.result(timeout=30)
    checkpoints = log.checkpoints()
    assert [c.tree_size for c in checkpoints] == [5, 10, 15, 20]
    leaves = [leaf_hash(e.leaf_bytes()) for e in log.entries(limit=23)]
    for c in checkpoints:
        c.verify(keys)
        assert c.root == merkle_root(leaves[: c.tree_size])
        assert c.key_id == keys.active_signing_key()
    assert log.latest_checkpoint() == checkpoints[-1]


def test_checkpoint_on_demand_covers_the_head_and_is_idempotent(log: AuditLog) -> None:
    for _ in range(7):
        log.submit("a", "b", "c")
    first = log.checkpoint()  # flushes what was submitted before it
    assert first.tree_size == 7
    assert log.checkpoint() == first
    assert [c.tree_size for c in log.checkpoints()] == [5, 7]
    log.verify()


def test_checkpoint_of_an_empty_log_is_refused(log: AuditLog) -> None:
    with pytest.raises(ConfigError, match="empty"):
        log.checkpoint()
    assert log.checkpoints() == []
    assert log.latest_checkpoint() is None


def test_exported_checkpoint_file(log: AuditLog, keys: LocalKeyring, tmp_path: Path) -> None:
    for _ in range(3):
        log.record("a", "b", "c")
    path = tmp_path / "elsewhere" / "head.json"
    path.parent.mkdir()
    exported = log.export_checkpoint(path)
    doc = json.loads(path.read_text())
    assert doc == {
        "format": CHECKPOINT_FORMAT,
        "version": 1,
        "tree_size": 3,
        "root": exported.root.hex(),
        "ts": exported.ts,
        "key_id": exported.key_id,
        "signature": base64.b64encode(exported.signature).decode(),
    }
    assert read_checkpoint(path, keys) == exported
    assert [p.name for p in path.parent.iterdir()] == ["head.json"]  # no temp file left
    assert log.verify(checkpoint=path).exported_tree_size == 3


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "invalid JSON"),
        (b"[]", "keys"),
        (b'{"format": "x"}', "keys"),
        ("extra", "keys"),
        ("format", "format"),
        ("tree_size", "tree_size"),
        ("root", "root"),
        ("ts", "ts"),
        ("signature", "signature"),
    ],
)
def test_a_malformed_checkpoint_file_is_refused(
    log: AuditLog, keys: LocalKeyring, tmp_path: Path, content: bytes | str, why: str
) -> None:
    log.record("a", "b", "c")
    path = tmp_path / "cp.json"
    log.export_checkpoint(path)
    if isinstance(content, str):
        doc = json.loads(path.read_text())
        doc[content] = {
            "extra": 1,
            "format": "other",
            "tree_size": 0,
            "root": "AB",
            "ts": "a\nb",
            "signature": "c2hvcnQ=",
        }[content]
        content = json.dumps(doc).encode()
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=why):
        read_checkpoint(path, keys)
    with pytest.raises(ConfigError, match=why):
        log.verify(checkpoint=path)


def test_checkpoint_message_is_the_documented_text() -> None:
    checkpoint = Checkpoint(3, bytes(range(32)), "2026-01-01T00:00:00.000000+00:00", "sig-1", b"")
    assert checkpoint.message() == (
        b"bastion audit checkpoint v1\n3\n"
        b"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
        b"2026-01-01T00:00:00.000000+00:00\nsig-1\n"
    )


# The vectors of docs/formats/checkpoint.md: three entries, the tree head over them, and that
# head signed with the RFC 8032 section 7.1 TEST 1 key (its secret key is public: tests only).
VECTOR_ENTRIES = [
    AuditEntry(
        1,
        "2026-01-01T00:00:00.000000+00:00",
        "alice",
        "model.promote",
        "model:fraud/3",
        "ok",
        '{"reason":"gates passed"}',
        b"",
    ),
    AuditEntry(
        2,
        "2026-01-01T00:00:01.500000+00:00",
        "svc-api",
        "model.predict",
        "deployment:fraud",
        "denied",
        '{"client":"c-7","why":"rate limit"}',
        b"",
    ),
    AuditEntry(
        3,
        "2026-01-01T00:00:02.000000+00:00",
        "bob",
        "dataset.erase",
        "dataset:adult",
        "ok",
        '{"subject":"née Müller"}',
        b"",
    ),
]
VECTOR_LEAVES = [
    "b8c8e56cf794487f43ccf44ac684fd0b36142196b5cbe7b440bd16d42ac39366",
    "54fb5b4bf03c433f0b477463bce6b0b08f8643cd2ac085819e5e58cb65a66a77",
    "5375fe80bed1b94c3f25fead4a2dcffe79d3259f68a25e95bd902914b3a52a8d",
]
VECTOR_CHAINS = [
    "619047c0aa441061e582d5fd790b016c7e4385d417cfadd68f94a22fb4337f75",
    "845571b102c444c77c084db1c9609a796fd30ba2dc1572849bf6879eef6d9ac6",
    "03e1ceab7f89adbd056c98664379127b1563945b6749e234f5a942313e30657e",
]
VECTOR_ROOT = "1a5971b4dc69808b86cd0259d1181561e6324eff6033b72885062aba0f400a70"
VECTOR_FILE = {
    "format": "bastion-audit-checkpoint",
    "version": 1,
    "tree_size": 3,
    "root": VECTOR_ROOT,
    "ts": "2026-01-01T00:00:03.000000+00:00",
    "key_id": "sig-rfc8032-test1",
    "signature": "n5iyRn/c13AyHYOniZ+bpC4Einq82q+aqCpvzbdjvnZrGtYDOrGjmk90"
    "mtoL5lD18oHuABwn9Qih5XDPBmghCw==",
}
RFC8032_TEST1_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"


class _OnePublicKey:
    """Just enough of a KeyProvider to verify: one public key under one id."""

    def public_key(self, key_id: str) -> Ed25519PublicKey:
        if key_id != VECTOR_FILE["key_id"]:
            raise UnknownKeyError(key_id)
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(RFC8032_TEST1_PUBLIC))


def test_leaf_and_chain_test_vectors() -> None:
    assert VECTOR_ENTRIES[0].leaf_bytes() == (
        b"1\x002026-01-01T00:00:00.000000+00:00\x00alice\x00model.promote\x00model:fraud/3"
        b'\x00ok\x00{"reason":"gates passed"}'
    )
    chain = bytes(32)
    for entry, leaf_hex, chain_hex in zip(
        VECTOR_ENTRIES, VECTOR_LEAVES, VECTOR_CHAINS, strict=True
    ):
        leaf = leaf_hash(entry.leaf_bytes())
        chain = hashlib.sha256(chain + leaf).digest()
        assert (leaf.hex(), chain.hex()) == (leaf_hex, chain_hex)


def test_every_leaf_encoder_gives_the_vectors() -> None:
    """The text form (writer, rebuild) and the bytes form (verify) are one encoding."""
    fields = [
        (e.seq, e.ts, e.actor, e.action, e.resource, e.outcome, e.details_json)
        for e in VECTOR_ENTRIES
    ]
    assert [audit_entry.leaf_hash(*f).hex() for f in fields] == VECTOR_LEAVES
    columns = [[str(f[i]).encode() for f in fields] for i in range(7)]
    assert [h.hex() for h in audit_entry.leaf_hashes(*columns)] == VECTOR_LEAVES
    leaves = [bytes.fromhex(h) for h in VECTOR_LEAVES]
    assert [c.hex() for c in audit_entry.chain_hashes(bytes(32), leaves)] == VECTOR_CHAINS
    assert audit_entry.chain_hash(bytes(32), leaves[0]).hex() == VECTOR_CHAINS[0]


_FIELD = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40)


@given(seq=st.integers(1, 2**63 - 1), fields=st.tuples(*[_FIELD] * 6))
def test_text_and_bytes_leaf_encoders_agree(seq: int, fields: tuple[str, ...]) -> None:
    by_text = audit_entry.leaf_hash(seq, *fields)
    by_bytes = audit_entry.leaf_hashes([b"%d" % seq], *([f.encode()] for f in fields))
    assert by_bytes == [by_text] == [leaf_hash(audit_entry.leaf_bytes(seq, *fields))]


def test_checkpoint_test_vector(tmp_path: Path) -> None:
    leaves = [bytes.fromhex(h) for h in VECTOR_LEAVES]
    assert merkle_root(leaves).hex() == VECTOR_ROOT
    path = tmp_path / "vector.json"
    path.write_text(json.dumps(VECTOR_FILE))
    checkpoint = read_checkpoint(path, _OnePublicKey())  # type: ignore[arg-type]
    assert checkpoint.message() == (
        b"bastion audit checkpoint v1\n3\n"
        + VECTOR_ROOT.encode()
        + b"\n2026-01-01T00:00:03.000000+00:00\nsig-rfc8032-test1\n"
    )
    assert (
        checkpoint.to_json() == json.dumps(VECTOR_FILE, indent=2, sort_keys=True).encode() + b"\n"
    )
    forged = dict(VECTOR_FILE, tree_size=4)
    path.write_text(json.dumps(forged))
    with pytest.raises(SignatureError):
        read_checkpoint(path, _OnePublicKey())  # type: ignore[arg-type]


# -- concurrency --------------------------------------------------------------------------------


def test_many_threads_append_gapless_with_a_valid_chain(log: AuditLog) -> None:
    seqs: list[int] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        for i in range(40):
            seq = log.record(f"worker-{worker}", "act", f"r{i}")
            with lock:
                seqs.append(seq)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seqs) == list(range(1, 481))
    report = log.verify()
    assert (report.entries, report.checkpoints) == (480, 96)


def test_two_logs_on_one_database_interleave_safely(
    database_url: str, engine: Engine, keys: LocalKeyring
) -> None:
    other_engine = make_engine(database_url)  # a second engine: as another process would have
    try:
        with (
            AuditLog(engine, keys, checkpoint_every=5) as one,
            AuditLog(other_engine, keys, checkpoint_every=5) as two,
        ):
            got = [one.record("one", "a", "r") for _ in range(3)]
            got += [two.record("two", "a", "r") for _ in range(4)]  # rebuilds from the rows
            got += [one.record("one", "a", "r") for _ in range(6)]  # rebuilds from checkpoint 5

            def hammer(audit: AuditLog, name: str) -> None:
                for _ in range(30):
                    got.append(audit.record(name, "a", "r"))

            threads = [
                threading.Thread(target=hammer, args=(a, n))
                for a, n in ((one, "one"), (two, "two"), (one, "one"), (two, "two"))
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(got) == list(range(1, 134))
            report = two.verify()
            assert report.entries == 133
            assert [c.tree_size for c in one.checkpoints()] == list(range(5, 134, 5))
    finally:
        other_engine.dispose()


def test_verify_walks_many_ranges(log: AuditLog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_walk, "_VERIFY_RANGE", 4)
    for _ in range(17):
        log.submit("a", "b", "c")
    log.flush()
    seen: list[tuple[int, int]] = []
    assert log.verify(progress=lambda done, total: seen.append((done, total))).entries == 17
    assert seen == [(4, 17), (8, 17), (12, 17), (16, 17), (17, 17)]


# -- failure and shutdown -----------------------------------------------------------------------


def test_a_failed_write_fails_closed(engine: Engine, log: AuditLog) -> None:
    log.record("a", "before", "r")
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_log RENAME TO audit_log_away"))
    futures = [log.submit("a", "lost", "r") for _ in range(5)]
    with pytest.raises(AuditError, match="could not write"):
        log.record("a", "lost", "r")
    for f in futures:
        with pytest.raises(AuditError):
            f.result(timeout=30)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_log_away RENAME TO audit_log"))
    assert log.head()[0] == 1  # nothing of the failed batches is visible
    assert log.checkpoints() == []
    assert log.record("a", "after", "r") == 2
    assert [e.action for e in log.entries()] == ["before", "after"]
    log.verify()


def test_a_read_only_database_fails_closed(
    database_url: str, engine: Engine, keys: LocalKeyring
) -> None:
    with AuditLog(engine, keys) as audit:
        audit.record("a", "before", "r")
    if engine.dialect.name == "sqlite":
        read_only = make_engine(
            database_url.replace("sqlite:///", "sqlite:///file:") + "?mode=ro&uri=true"
        )
    else:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(
                text(
                    f'ALTER DATABASE "{engine.url.database}" SET default_transaction_read_only = on'
                )
            )
        read_only = make_engine(database_url)
    try:
        with AuditLog(read_only, keys) as audit:
            with pytest.raises(AuditError):
                audit.record("a", "refused", "r")
            with pytest.raises(AuditError):
                audit.checkpoint()
            assert audit.head()[0] == 1
            assert audit.verify().entries == 1
    finally:
        read_only.dispose()


def test_close_flushes_every_pending_submission(engine: Engine, keys: LocalKeyring) -> None:
    audit = AuditLog(engine, keys)
    futures = [audit.submit("a", "b", f"r{i}") for i in range(300)]
    audit.close()
    assert [f.result(timeout=0) for f in futures] == list(range(1, 301))
    assert AuditLog(engine, keys).verify().entries == 300


def test_a_closed_log_refuses_to_record(engine: Engine, keys: LocalKeyring) -> None:
    with AuditLog(engine, keys) as audit:
        audit.record("a", "b", "c")
    audit.close()  # idempotent
    with pytest.raises(AuditError, match="closed"):
        audit.record("a", "b", "c")
    with pytest.raises(AuditError, match="closed"):
        audit.submit("a", "b", "c")
    with pytest.raises(AuditError, match="closed"), engine.begin() as conn:
        audit.record_in(conn, "a", "b", "c")
    assert audit.verify().entries == 1  # reading still works


def test_appending_onto_a_log_that_does_not_match_its_head_is_refused(
    engine: Engine, keys: LocalKeyring
) -> None:
    with AuditLog(engine, keys, checkpoint_every=5) as audit:
        for _ in range(7):
            audit.record("a", "b", "c")
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 6"))
    with AuditLog(engine, keys, checkpoint_every=5) as fresh:  # rebuilds: checkpoint 5 + 6, 7
        with pytest.raises(AuditError, match="does not match its head"):
            fresh.record("a", "b", "c")
        with pytest.raises(AuditChainError):
            fresh.verify()


# -- asyncio ----------------------------------------------------------------------------------


def test_arecord_from_many_tasks_shares_commits_gapless(log: AuditLog) -> None:
    import asyncio

    async def worker(n: int) -> list[int]:
        return [await log.arecord(f"task-{n}", "predict", "deployment:d") for _ in range(20)]

    async def main() -> list[list[int]]:
        return await asyncio.gather(*(worker(n) for n in range(50)))

    seqs = sorted(s for batch in asyncio.run(main()) for s in batch)
    assert seqs == list(range(1, 1001))
    report = log.verify()
    assert report.entries == 1000 and report.checkpoints == 200  # every 5 entries


def test_arecord_fails_closed_in_the_awaiting_task(engine: Engine, log: AuditLog) -> None:
    import asyncio

    log.record("a", "before", "r")
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_log RENAME TO audit_log_away"))

    async def main() -> None:
        with pytest.raises(AuditError, match="could not write"):
            await log.arecord("a", "lost", "r")

    asyncio.run(main())
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_log_away RENAME TO audit_log"))
    assert [e.action for e in log.entries()] == ["before"]
