"""Scope coverage: the one rule for "does a grant on this scope cover that one?".

A scope is ``(resource_type, resource)``: ``("*", "*")`` is everything, ``(type, "*")``
every resource of one type, ``(type, name)`` one resource. A grant covers a scope when its
type is ``"*"``, or its type is the scope's and its resource is ``"*"`` or the scope's.
An action on no resource at all (``resource`` None) is covered only by a ``"*"`` resource.

:func:`covers` decides in Python (authorization, revoking orphaned tokens, the server's
JWT deployments); :func:`covers_clause` is the same rule as a SQL expression (the token
lookup's join). Both are tested against each other over every combination.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["covers", "covers_clause"]


def covers(
    grant_type: str, grant_resource: str, resource_type: str | None, resource: str | None
) -> bool:
    """Does a grant on (grant_type, grant_resource) cover the scope (resource_type, resource)?"""
    if grant_type == "*":
        return True
    return grant_type == resource_type and grant_resource in ("*", resource)


def covers_clause(
    grant_type: sa.ColumnElement[str],
    grant_resource: sa.ColumnElement[str],
    resource_type: sa.ColumnElement[str],
    resource: sa.ColumnElement[str],
) -> sa.ColumnElement[bool]:
    """:func:`covers` as a SQL boolean over four column expressions."""
    return sa.or_(
        grant_type == "*",
        sa.and_(
            grant_type == resource_type,
            sa.or_(grant_resource == "*", grant_resource == resource),
        ),
    )
