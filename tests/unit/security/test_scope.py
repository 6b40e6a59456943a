"""Scope coverage: the Python rule and its SQL twin agree on every combination, so the
token lookup (SQL) and authorization and revocation (Python) can never disagree."""

from __future__ import annotations

import itertools

import pytest
import sqlalchemy as sa

from bastion.security.scope import covers, covers_clause

TYPES = ("*", "dataset", "model", "deployment")
RESOURCES = ("*", "a", "b")


@pytest.mark.parametrize(
    ("grant", "scope", "expected"),
    [
        (("*", "*"), ("model", "a"), True),
        (("*", "*"), (None, None), True),
        (("model", "*"), ("model", "a"), True),
        (("model", "*"), ("dataset", "a"), False),
        (("model", "a"), ("model", "a"), True),
        (("model", "a"), ("model", "b"), False),
        (("model", "a"), ("model", None), False),
        (("model", "*"), ("model", None), True),
        (("deployment", "a"), (None, None), False),
    ],
)
def test_covers(
    grant: tuple[str, str], scope: tuple[str | None, str | None], expected: bool
) -> None:
    assert covers(*grant, *scope) is expected


def test_the_sql_clause_is_the_python_rule() -> None:
    engine = sa.create_engine("sqlite://")
    meta = sa.MetaData()
    rows = sa.Table(
        "rows",
        meta,
        sa.Column("gt", sa.String),
        sa.Column("gr", sa.String),
        sa.Column("rt", sa.String),
        sa.Column("r", sa.String),
    )
    meta.create_all(engine)
    combos = list(itertools.product(TYPES, RESOURCES, TYPES[1:], RESOURCES))
    c = rows.c
    with engine.begin() as conn:
        conn.execute(
            rows.insert(), [dict(zip(("gt", "gr", "rt", "r"), x, strict=True)) for x in combos]
        )
        hit = conn.execute(
            sa.select(c.gt, c.gr, c.rt, c.r).where(covers_clause(c.gt, c.gr, c.rt, c.r))
        ).all()
    assert {tuple(row) for row in hit} == {x for x in combos if covers(*x)}
    assert 0 < len(hit) < len(combos)
