"""Alembic environment: runs on the connection that :func:`bastion.store.db.migrate` passes."""

from __future__ import annotations

from alembic import context

from bastion.store.db import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached by a bare `alembic` command
    raise SystemExit("run migrations through bastion.store.db.migrate()")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
