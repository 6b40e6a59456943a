"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26 02:37:05.411136
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The access policy is data: which role may do what. Later migrations change it with
# inserts and deletes like these, so a running deployment's policy is always inspectable
# with one SELECT.
ROLE_PERMISSIONS: dict[str, list[str]] = {
    "admin": ["*"],
    "data-steward": [
        "artifact:read",
        "artifact:write",
        "audit:read",
        "dataset:read",
        "dataset:write",
        "verify:run",
    ],
    "ml-engineer": [
        "artifact:read",
        "artifact:write",
        "dataset:read",
        "model:read",
        "model:register",
        "pipeline:run",
        "verify:run",
    ],
    "approver": ["audit:read", "model:approve", "model:read", "verify:run"],
    "auditor": [
        "audit:checkpoint",
        "audit:read",
        "audit:verify",
        "keys:read",
        "model:read",
        "verify:run",
    ],
    "consumer": ["deployment:predict"],
}


def upgrade() -> None:
    op.create_table(
        "artifacts",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=True),
        sa.Column("created", sa.String(length=40), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("ts", sa.String(length=40), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.LargeBinary(length=64), nullable=False),
        sa.Column("frontier", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tree_size"),
    )
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("chain", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ts", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=128), nullable=False),
        sa.Column("resource", sa.String(length=512), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("chain", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_table(
        "principals",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created", sa.String(length=40), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "role_permissions",
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("permission", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("role", "permission"),
    )
    op.bulk_insert(
        sa.table("role_permissions", sa.column("role"), sa.column("permission")),
        [{"role": r, "permission": p} for r, perms in ROLE_PERMISSIONS.items() for p in perms],
    )
    op.create_table(
        "statements",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("payload_type", sa.String(length=128), nullable=False),
        sa.Column("predicate_type", sa.String(length=256), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("created", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "grants",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("principal", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("resource_type", sa.String(length=16), nullable=False),
        sa.Column("resource", sa.String(length=256), nullable=False),
        sa.Column("created", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["principal"],
            ["principals.name"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("principal", "role", "resource_type", "resource", name="uq_grants"),
    )
    op.create_table(
        "statement_subjects",
        sa.Column("statement_id", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["statement_id"],
            ["statements.id"],
        ),
        sa.PrimaryKeyConstraint("statement_id", "digest"),
    )
    with op.batch_alter_table("statement_subjects", schema=None) as batch_op:
        batch_op.create_index("ix_statement_subjects_digest", ["digest"], unique=False)

    op.create_table(
        "tokens",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("principal", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("resource_type", sa.String(length=16), nullable=False),
        sa.Column("resource", sa.String(length=256), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("created", sa.String(length=40), nullable=False),
        sa.Column("expires", sa.String(length=40), nullable=False),
        sa.Column("revoked", sa.String(length=40), nullable=True),
        sa.Column("description", sa.String(length=256), nullable=False),
        sa.ForeignKeyConstraint(
            ["principal"],
            ["principals.name"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("tokens")
    with op.batch_alter_table("statement_subjects", schema=None) as batch_op:
        batch_op.drop_index("ix_statement_subjects_digest")

    op.drop_table("statement_subjects")
    op.drop_table("grants")
    op.drop_table("statements")
    op.drop_table("role_permissions")
    op.drop_table("principals")
    op.drop_table("audit_log")
    op.drop_table("audit_head")
    op.drop_table("audit_checkpoints")
    op.drop_table("artifacts")
