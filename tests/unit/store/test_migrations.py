"""Migrations build the schema from empty, agree with the table definitions, and undo cleanly."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

from bastion.store import db


def _config(conn: object) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    cfg.attributes["connection"] = conn
    return cfg


def test_migrations_from_empty_build_every_table(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        db.migrate(engine)
        tables = set(inspect(engine).get_table_names())
        assert set(db.metadata.tables) <= tables
        assert "alembic_version" in tables
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), db.metadata)
            assert diffs == [], f"migrations and db.py disagree: {diffs}"
            rp = db.role_permissions.c
            perms = set(conn.execute(select(rp.role, rp.permission)).all())
        assert ("admin", "*") in perms
        assert ("consumer", "deployment:predict") in perms
        assert not any(role == "consumer" and p != "deployment:predict" for role, p in perms)
    finally:
        engine.dispose()


def test_migrations_are_idempotent_and_reversible(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        db.migrate(engine)
        db.migrate(engine)  # a second upgrade is a no-op
        with engine.begin() as conn:
            command.downgrade(_config(conn), "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        db.migrate(engine)
        assert set(db.metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
