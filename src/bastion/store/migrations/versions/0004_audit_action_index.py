"""an index on the audit log's action, for the model registry's history

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 10:00:00.000000

``ModelRegistry`` resolves a model NAME from its ``model.register`` audit entries
(``AuditLog.entries(action=...)``: ``WHERE action = ? AND seq >= ? ORDER BY seq``). Without
an index that query reads the whole log, which with a million entries is most of a second
on every ``bastion serve`` start and ``models show``. The index on ``(action, seq)`` answers
it from the entries of that action alone, in seq order, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from alembic import op


revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_log_action_seq", "audit_log", ["action", "seq"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_action_seq", table_name="audit_log")
