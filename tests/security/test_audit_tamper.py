"""Attacks on a stored audit log, each made with plain SQL on the real database.

The attacker can write to the database but holds no signing key of the keyring. Every
attack must end in :class:`AuditChainError` naming where the log was changed; attacks that
rewrite the hash chain consistently are caught by signed checkpoints, and truncation or a
rewritten history with every local trace removed by a checkpoint exported elsewhere.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from bastion.errors import AuditChainError
from bastion.security.audit import AuditLog, AuditProblem, Checkpoint
from bastion.security.keys import LocalKeyring
from bastion.security.merkle import Frontier, leaf_hash
from bastion.store.db import make_engine, migrate

ENTRIES = 12  # checkpoints are signed at 5 and 10
FIELDS = ("ts", "actor", "action", "resource", "outcome", "details")


@pytest.fixture
def audit_engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def audit(audit_engine: Engine, keyring: LocalKeyring) -> Iterator[AuditLog]:
    """A log of 12 entries by several actors, checkpointed every 5."""
    with AuditLog(audit_engine, keyring, checkpoint_every=5) as log:
        for i in range(ENTRIES):
            log.record(f"user-{i % 3}", "model.predict", f"deployment:d{i}", details={"i": i})
        yield log


def problems_of(log: AuditLog, **kwargs: Any) -> list[AuditProblem]:
    with pytest.raises(AuditChainError) as caught:
        log.verify(**kwargs)
    problems: list[AuditProblem] = caught.value.problems  # type: ignore[attr-defined]
    assert str(caught.value).startswith("the audit log failed verification")
    return problems


def kinds_at(problems: list[AuditProblem]) -> set[tuple[str, int | None]]:
    return {(p.kind, p.seq) for p in problems}


def sql(engine: Engine, statement: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement), params)


# -- what an attacker who knows the format (but has no key) can compute ------------------------


def rows(conn: Connection) -> list[Any]:
    return list(conn.execute(text(
        "SELECT seq, ts, actor, action, resource, outcome, details, chain FROM audit_log"
        " ORDER BY seq"
    )))  # fmt: skip


def rechain(engine: Engine) -> list[bytes]:
    """Recompute every chain value and the head from the rows as they now are."""
    with engine.begin() as conn:
        chain, leaves = bytes(32), []
        for row in rows(conn):
            leaf = leaf_hash("\0".join(str(v) for v in row[:7]).encode())
            chain = hashlib.sha256(chain + leaf).digest()
            leaves.append(leaf)
            conn.execute(text("UPDATE audit_log SET chain = :c WHERE seq = :s"),
                         {"c": chain, "s": row[0]})  # fmt: skip
        conn.execute(text("UPDATE audit_head SET seq = :s, chain = :c WHERE id = 1"),
                     {"s": len(leaves), "c": chain})  # fmt: skip
    return leaves


def restamp_checkpoints(engine: Engine, leaves: list[bytes], signer: LocalKeyring | None) -> None:
    """Give every stored checkpoint the root of the rewritten log; re-sign with ``signer``."""
    with engine.begin() as conn:
        for (size,) in conn.execute(text("SELECT tree_size FROM audit_checkpoints")).all():
            frontier = Frontier.of(leaves[:size])
            values: dict[str, Any] = {"r": frontier.root(), "f": json.dumps(frontier.to_hex()),
                                      "s": size}  # fmt: skip
            if signer is None:  # keep the old signature: the attacker has no key
                conn.execute(text("UPDATE audit_checkpoints SET root = :r, frontier = :f"
                                  " WHERE tree_size = :s"), values)  # fmt: skip
                continue
            key_id = signer.active_signing_key()
            draft = Checkpoint(size, frontier.root(), "2026-01-01T00:00:00.000000+00:00", key_id,
                               b"")  # fmt: skip
            values |= {"k": key_id, "t": draft.ts, "g": signer.sign(key_id, draft.message())}
            conn.execute(text(
                "UPDATE audit_checkpoints SET root = :r, frontier = :f, key_id = :k, ts = :t,"
                " signature = :g WHERE tree_size = :s"
            ), values)  # fmt: skip


# -- the attacks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ts", "2020-01-01T00:00:00.000000+00:00"),
        ("actor", "mallory"),
        ("action", "model.delete"),
        ("resource", "deployment:other"),
        ("outcome", "denied"),
        ("details", '{"i":70}'),
        ("details", '{"i":7} '),
        ("actor", "user-1\x1euser-2"),  # the separator of verify's aggregated fast path
        ("actor", "user-1\x00forged"),  # a NUL, which C-string handling would cut off
    ],
)
def test_edited_entry_is_detected(
    audit: AuditLog, audit_engine: Engine, field: str, value: str
) -> None:
    if "\x00" in value and audit_engine.dialect.name == "postgresql":
        pytest.skip("PostgreSQL text cannot hold NUL")
    statement = f"UPDATE audit_log SET {field} = :v WHERE seq = 7"  # noqa: S608 - a known column
    sql(audit_engine, statement, v=value)
    problems = problems_of(audit)
    assert problems[0] == AuditProblem(
        "edited", 7, "entry 7 does not match its chain value (edited, inserted or reordered)"
    )
    assert kinds_at(problems) == {("edited", 7), ("checkpoint-root", 10)}


def test_edited_chain_value_is_detected(audit: AuditLog, audit_engine: Engine) -> None:
    sql(audit_engine, "UPDATE audit_log SET chain = :c WHERE seq = 7", c=b"\x01" * 32)
    assert ("edited", 7) in kinds_at(problems_of(audit))


def test_deleted_entry_is_detected(audit: AuditLog, audit_engine: Engine) -> None:
    sql(audit_engine, "DELETE FROM audit_log WHERE seq = 6")
    problems = problems_of(audit)
    assert problems[0] == AuditProblem("missing", 6, "entry 6 is missing (deleted)")
    assert ("edited", 7) not in kinds_at(problems)  # the gap explains the broken link


def test_deleted_last_entry_is_detected(audit: AuditLog, audit_engine: Engine) -> None:
    sql(audit_engine, "DELETE FROM audit_log WHERE seq = 12")
    assert kinds_at(problems_of(audit)) == {("head", 12)}


def test_inserted_entry_is_detected(audit: AuditLog, audit_engine: Engine) -> None:
    sql(audit_engine, "UPDATE audit_log SET seq = seq + 1000 WHERE seq > 6")
    sql(audit_engine, "UPDATE audit_log SET seq = seq - 999 WHERE seq > 1000")
    with audit_engine.begin() as conn:  # a well-formed entry 7, chained onto entry 6
        (chain6,) = conn.execute(text("SELECT chain FROM audit_log WHERE seq = 6")).one()
        forged = (7, "2026-01-01T00:00:00.000000+00:00", "admin", "model.promote", "model:x",
                  "ok", "{}")  # fmt: skip
        chain7 = hashlib.sha256(
            bytes(chain6) + leaf_hash("\0".join(map(str, forged)).encode())
        ).digest()
        conn.execute(text(
            "INSERT INTO audit_log VALUES (:s, :t, :a, :n, :r, :o, :d, :c)"
        ), dict(zip("stanrod", forged, strict=True), c=chain7))  # fmt: skip
    found = kinds_at(problems_of(audit))
    assert ("edited", 7) not in found
    assert {("edited", 8), ("edited", 13), ("head", 12), ("checkpoint-root", 10)} <= found


def test_reordered_entries_are_detected(audit: AuditLog, audit_engine: Engine) -> None:
    with audit_engine.begin() as conn:
        by_seq = {row[0]: row for row in rows(conn)}
        for seq, other in ((4, 8), (8, 4)):
            conn.execute(text(
                "UPDATE audit_log SET ts = :t, actor = :a, action = :n, resource = :r,"
                " outcome = :o, details = :d, chain = :c WHERE seq = :s"
            ), dict(zip("tanrodc", by_seq[other][1:], strict=True), s=seq))  # fmt: skip
    found = kinds_at(problems_of(audit))
    assert {("edited", 4), ("edited", 8), ("checkpoint-root", 5)} <= found


def test_edit_with_recomputed_chain_is_caught_by_signed_checkpoint(
    audit: AuditLog, audit_engine: Engine
) -> None:
    sql(audit_engine, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
    rechain(audit_engine)  # every chain value and the head agree with the forged entry
    problems = problems_of(audit)
    assert kinds_at(problems) == {("checkpoint-root", 5), ("checkpoint-root", 10)}
    assert problems[0].message.startswith("entries 1..5 were changed after checkpoint 5")


def test_edit_with_recomputed_checkpoint_roots_fails_their_signatures(
    audit: AuditLog, audit_engine: Engine
) -> None:
    sql(audit_engine, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
    restamp_checkpoints(audit_engine, rechain(audit_engine), signer=None)
    found = kinds_at(problems_of(audit))
    assert found == {("checkpoint-signature", 5), ("checkpoint-signature", 10)}


def test_forged_checkpoint_signature_is_detected(
    audit: AuditLog, audit_engine: Engine, keyring: LocalKeyring, tmp_path: Path
) -> None:
    sql(audit_engine, "UPDATE audit_checkpoints SET signature = :g WHERE tree_size = 5",
        g=bytes(64))  # fmt: skip
    assert kinds_at(problems_of(audit)) == {("checkpoint-signature", 5)}
    sql(audit_engine, "DELETE FROM audit_checkpoints WHERE tree_size = 5")
    path = tmp_path / "head.json"
    audit.export_checkpoint(path)
    doc = json.loads(path.read_text())
    doc["tree_size"] = 11  # claims another size; the signature no longer covers it
    path.write_text(json.dumps(doc))
    assert kinds_at(problems_of(audit, checkpoint=path)) == {("export-signature", None)}


def test_checkpoint_from_unknown_key_is_refused(
    audit: AuditLog, audit_engine: Engine, other_keyring: LocalKeyring
) -> None:
    sql(audit_engine, "UPDATE audit_log SET outcome = 'denied' WHERE seq = 2")
    restamp_checkpoints(audit_engine, rechain(audit_engine), signer=other_keyring)
    problems = problems_of(audit)
    assert kinds_at(problems) == {("checkpoint-key", 5), ("checkpoint-key", 10)}
    assert other_keyring.active_signing_key() in problems[0].message


def test_exported_checkpoint_from_unknown_key_is_refused(
    audit: AuditLog, keyring: LocalKeyring, other_keyring: LocalKeyring, tmp_path: Path
) -> None:
    # A true tree head of this very log, but signed by a key this keyring never trusted.
    leaves = [leaf_hash(e.leaf_bytes()) for e in audit.entries(limit=ENTRIES)]
    key_id = other_keyring.active_signing_key()
    draft = Checkpoint(ENTRIES, Frontier.of(leaves).root(), "2026-01-01T00:00:00+00:00", key_id,
                       b"")  # fmt: skip
    signature = other_keyring.sign(key_id, draft.message())
    forged = Checkpoint(draft.tree_size, draft.root, draft.ts, key_id, signature)
    path = tmp_path / "forged.json"
    path.write_bytes(forged.to_json())
    assert key_id not in {info.id for info in keyring.keys()}
    problems = problems_of(audit, checkpoint=path)
    assert kinds_at(problems) == {("export-key", None)}


def test_truncation_is_detected_against_exported_checkpoint(
    audit: AuditLog, audit_engine: Engine, tmp_path: Path
) -> None:
    exported = tmp_path / "kept-elsewhere.json"
    audit.export_checkpoint(exported)  # tree size 12
    sql(audit_engine, "DELETE FROM audit_log WHERE seq > 10")
    sql(audit_engine, "DELETE FROM audit_checkpoints WHERE tree_size > 10")
    rechain(audit_engine)  # the head now names entry 10: locally nothing is amiss
    assert audit.verify().entries == 10
    problems = problems_of(audit, checkpoint=exported)
    assert kinds_at(problems) == {("truncated", 12)}
    assert "holds 10" in problems[0].message


def test_fork_is_detected_against_exported_checkpoint(
    audit: AuditLog, audit_engine: Engine, tmp_path: Path
) -> None:
    exported = tmp_path / "kept-elsewhere.json"
    audit.export_checkpoint(exported)  # tree size 12
    sql(audit_engine, "UPDATE audit_log SET resource = 'deployment:elsewhere' WHERE seq = 9")
    sql(audit_engine, "DELETE FROM audit_checkpoints")  # no signed trace left in the database
    rechain(audit_engine)
    assert audit.verify().entries == 12  # a different history of the same size
    problems = problems_of(audit, checkpoint=exported)
    assert kinds_at(problems) == {("fork", 12)}
    assert "forked" in problems[0].message


def test_dropped_audit_table_is_detected(audit: AuditLog, audit_engine: Engine) -> None:
    sql(audit_engine, "DROP TABLE audit_log")
    assert kinds_at(problems_of(audit)) == {("unreadable", None)}
