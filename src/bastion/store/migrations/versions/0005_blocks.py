"""blocks: principals the server's extraction monitor blocked, and their lifting

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 04:00:00.000000

One row per block (``bastion.security.blocks``): who, the stable reason code the client
sees, when and by which detector, the admins' detail (canonical JSON), and, once an admin
lifts it, when, by whom and why. Every row carries a MAC (``bastion.security.rows``) from
its first write, so nothing needs sealing here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blocks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("principal", sa.String(length=128), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("created", sa.String(length=40), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("lifted", sa.String(length=40), nullable=True),
        sa.Column("lifted_by", sa.String(length=128), nullable=True),
        sa.Column("lift_reason", sa.String(length=512), nullable=True),
        sa.Column("mac", sa.LargeBinary(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_blocks_principal", "blocks", ["principal"])


def downgrade() -> None:
    op.drop_index("ix_blocks_principal", table_name="blocks")
    op.drop_table("blocks")
