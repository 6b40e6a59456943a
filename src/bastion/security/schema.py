"""The metadata database's tables, in SQLAlchemy 2 Core: the one definition of their shapes.

They sit here, below the store, because the security services read, write and seal these
rows (tokens, grants, the audit log, statements, row MACs) while the store sits above
security; :mod:`bastion.store.db` re-exports every table and owns engines and the Alembic
migrations, which create and upgrade exactly these shapes.

Timestamps are ISO-8601 UTC text so the audit log hashes the very bytes it stores.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "artifacts",
    "audit_checkpoints",
    "audit_head",
    "audit_log",
    "blocks",
    "grants",
    "metadata",
    "models",
    "principals",
    "role_permissions",
    "runs",
    "stage_cache",
    "statement_subjects",
    "statements",
    "tokens",
]

metadata = MetaData()

artifacts = Table(
    "artifacts",
    metadata,
    Column("digest", String(64), primary_key=True),  # SHA-256 of the plaintext, hex
    Column("size", BigInteger, nullable=False),
    Column("media_type", String(128), nullable=False),
    Column("name", String(256), nullable=True),
    Column("created", String(40), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("mac", LargeBinary(32), nullable=True),  # HMAC of the row: security/rows.py
)

statements = Table(
    "statements",
    metadata,
    Column("id", String(64), primary_key=True),  # SHA-256 of the envelope JSON
    Column("payload_type", String(128), nullable=False),
    Column("predicate_type", String(256), nullable=False),
    Column("envelope", Text, nullable=False),
    Column("created", String(40), nullable=False),
)

statement_subjects = Table(
    "statement_subjects",
    metadata,
    Column("statement_id", String(64), ForeignKey("statements.id"), primary_key=True),
    Column("digest", String(64), primary_key=True),
    Index("ix_statement_subjects_digest", "digest"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts", String(40), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(128), nullable=False),
    Column("resource", String(512), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("details", Text, nullable=False),  # canonical JSON
    Column("chain", LargeBinary(32), nullable=False),  # H(prev chain || leaf hash)
    # entries of one action in seq order (the model registry's history): migration 0004
    Index("ix_audit_log_action_seq", "action", "seq"),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1
    Column("seq", BigInteger, nullable=False),
    Column("chain", LargeBinary(32), nullable=False),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("ts", String(40), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signature", LargeBinary(64), nullable=False),
    Column("frontier", Text, nullable=False),  # JSON list of hex node hashes (RFC 6962 right edge)
    Column("mac", LargeBinary(32), nullable=True),  # HMAC of the row: security/rows.py
)

principals = Table(
    "principals",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),  # person | service
    Column("created", String(40), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("mac", LargeBinary(32), nullable=True),  # HMAC of the row: security/rows.py
)

role_permissions = Table(
    "role_permissions",
    metadata,
    Column("role", String(32), primary_key=True),
    Column("permission", String(64), primary_key=True),
    Column("mac", LargeBinary(32), nullable=True),  # HMAC of the row: security/rows.py
)

grants = Table(
    "grants",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("principal", String(128), ForeignKey("principals.name"), nullable=False),
    Column("role", String(32), nullable=False),
    Column("resource_type", String(16), nullable=False),  # * | dataset | model | deployment
    Column("resource", String(256), nullable=False),  # * or a name
    Column("created", String(40), nullable=False),
    Column("mac", LargeBinary(32), nullable=True),  # HMAC of the row: security/rows.py
    UniqueConstraint("principal", "role", "resource_type", "resource", name="uq_grants"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(32), primary_key=True),  # public lookup id, part of the token text
    Column("principal", String(128), ForeignKey("principals.name"), nullable=False),
    Column("role", String(32), nullable=False),
    Column("resource_type", String(16), nullable=False),
    Column("resource", String(256), nullable=False),
    Column("secret_hash", LargeBinary(32), nullable=False),  # SHA-256 of the 256-bit secret
    Column("created", String(40), nullable=False),
    Column("expires", String(40), nullable=False),
    Column("revoked", String(40), nullable=True),
    Column("description", String(256), nullable=False, default=""),
    Column("mac", LargeBinary(32), nullable=True),  # HMAC of the row: security/rows.py
)


runs = Table(
    "runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("pipeline", String(64), nullable=False),
    Column("config_digest", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # running | passed | failed | error
    Column("actor", String(128), nullable=False),
    Column("started", String(40), nullable=False),
    Column("finished", String(40), nullable=True),
    Column("record", Text, nullable=False),  # JSON: environment, seeds, stages, gates, model
)

stage_cache = Table(
    "stage_cache",
    metadata,
    Column("key", String(64), primary_key=True),  # SHA-256 of stage, version, config, inputs
    Column("stage", String(64), nullable=False),
    Column("outputs", Text, nullable=False),  # JSON {output name: digest}
    Column("statement_id", String(64), nullable=False),
    Column("run_id", String(32), nullable=False),
    Column("created", String(40), nullable=False),
)

models = Table(
    "models",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("digest", String(64), nullable=False),  # the serialized model artifact
    Column("statement_id", String(64), nullable=False),  # the signed release statement
    Column("run_id", String(32), nullable=False),
    Column("status", String(16), nullable=False),  # registered | production | archived
    Column("created", String(40), nullable=False),
    Column("record", Text, nullable=False),  # JSON: metrics, gates, card digests, estimator
    Column("mac", LargeBinary(32), nullable=True),  # HMAC of the row: security/rows.py
)

blocks = Table(
    "blocks",
    metadata,
    Column("id", String(32), primary_key=True),  # random, the client's support reference
    Column("principal", String(128), nullable=False),  # who is blocked
    Column("code", String(32), nullable=False),  # stable reason code: EXTRACTION_SUSPECTED
    Column("created", String(40), nullable=False),
    Column("created_by", String(128), nullable=False),  # the detector that blocked
    Column("detail", Text, nullable=False),  # canonical JSON for admins: detector, statistic
    Column("lifted", String(40), nullable=True),  # when an admin lifted it; NULL = active
    Column("lifted_by", String(128), nullable=True),
    Column("lift_reason", String(512), nullable=True),
    Column("mac", LargeBinary(32), nullable=True),  # HMAC of the row: security/rows.py
    Index("ix_blocks_principal", "principal"),
)
