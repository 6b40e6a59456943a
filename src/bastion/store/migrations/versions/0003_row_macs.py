"""row MACs on every table a security decision reads

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:00:00.000000

Adds a nullable ``mac`` column (HMAC-SHA256, 32 bytes) to principals, role_permissions,
grants, tokens, models, artifacts and audit_checkpoints. A migration has no key, so it
cannot compute MACs: existing rows are sealed once, at the first open with the passphrase
(see ``bastion.security.rows``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = (
    "principals",
    "role_permissions",
    "grants",
    "tokens",
    "models",
    "artifacts",
    "audit_checkpoints",
)


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("mac", sa.LargeBinary(length=32), nullable=True))


def downgrade() -> None:
    for table in reversed(TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("mac")
