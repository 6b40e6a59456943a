"""Access control: principals, roles, grants of roles on scopes, and API tokens.

The model::

    principal (person | service)  ──grant──>  role  on  scope (resource_type, resource)
    role ──role_permissions (data, seeded by migration 0001; "*" = everything)──> permissions
    token = (principal, role, scope), never wider than one of the principal's grants

A scope is ``("*", "*")`` (everything), ``(type, "*")`` (every dataset, model or
deployment) or ``(type, name)`` (one of them). A token scoped to deployment ``D`` authorizes
actions on ``D`` only: another deployment, another type, or an action on no resource at all
is :class:`~bastion.errors.AccessDenied`.

The parts: :mod:`bastion.security.tokens` (token text and secrets, and authentication: one
query, every row's MAC checked before it is believed, one bland
:class:`~bastion.errors.AuthError` whatever is wrong), :mod:`bastion.security.access_store`
(rows believed only once their MAC checks; each write sealed, under the access state, and
audited in the same transaction), and the checks of every value a caller passes
(``security/_access_checks.py``). :class:`AccessControl` puts them together and decides.

Reads and authorization decisions are not recorded here; the workspace and the server do
that. A role's permissions are data (``role_permissions``), each row checked before it
widens anything: a forged one refuses the role (:class:`~bastion.errors.ForgedCredential`,
audited).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa

from bastion.errors import AccessDenied, ConfigError, NotFound
from bastion.security._access_checks import (
    MAX_TOKEN_LIFETIME,
    PRINCIPAL_KINDS,
    RESOURCE_TYPES,
    ROLES,
)
from bastion.security._access_checks import check_actor as _check_actor
from bastion.security._access_checks import check_grant as _check_grant
from bastion.security._access_checks import check_kind as _check_kind
from bastion.security._access_checks import check_principal as _check_principal
from bastion.security._access_checks import check_role as _check_role
from bastion.security._access_checks import check_target as _check_target
from bastion.security._access_checks import check_token_id as _check_token_id
from bastion.security._access_checks import check_token_terms as _check_token_terms
from bastion.security.access_records import Grant, Identity, IssuedToken, Principal, TokenInfo
from bastion.security.access_state import AccessState
from bastion.security.access_store import AccessStore, now_utc
from bastion.security.access_store import iso as _iso
from bastion.security.rows import RowMac
from bastion.security.schema import grants as grants_table
from bastion.security.schema import principals, role_permissions, tokens
from bastion.security.scope import covers
from bastion.security.sink import AuditSink
from bastion.security.tokens import TokenAuthenticator, new_token

__all__ = [
    "MAX_TOKEN_LIFETIME",
    "PRINCIPAL_KINDS",
    "RESOURCE_TYPES",
    "ROLES",
    "AccessControl",
    "Grant",
    "Identity",
    "IssuedToken",
    "Principal",
    "TokenInfo",
]


class AccessControl:
    """Principals, grants and tokens in the metadata database; every change audited."""

    def __init__(
        self,
        engine: sa.Engine,
        audit: AuditSink,
        *,
        rows: RowMac,
        state: AccessState | None = None,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        """``state``: the home's sealed access state, which every write keeps (a workspace
        always passes it); without one, rows are authenticated but not their currency."""
        self._engine = engine
        self._rows = rows
        self._store = AccessStore(engine, audit, rows, state, clock)
        self._tokens = TokenAuthenticator(self._store)

    # -- principals -----------------------------------------------------------------------

    def add_principal(self, name: str, kind: str = "person", *, actor: str) -> None:
        """Register a person or service. Refused if the name is taken."""
        _check_principal(name, "name")
        _check_kind(kind)
        _check_actor(actor)
        with self._engine.connect() as conn:
            taken = conn.execute(sa.select(principals.c.name).where(principals.c.name == name))
            if taken.first() is not None:
                raise ConfigError(f"name: principal {name!r} already exists")
        created = _iso(self._store.now())

        def change(conn: sa.Connection) -> None:
            values = {"name": name, "kind": kind, "created": created, "disabled": False}
            conn.execute(sa.insert(principals).values(**self._rows.sealed("principals", values)))

        self._store.apply(actor, "principal.add", f"principal:{name}", {"kind": kind}, change)

    def list_principals(self) -> list[Principal]:
        """Every principal, by name."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(principals).order_by(principals.c.name)).all()
        return [Principal(r.name, r.kind, r.created, bool(r.disabled)) for r in rows]

    def disable_principal(self, name: str, *, actor: str) -> None:
        """Disable a principal: from now on every one of its tokens fails to authenticate."""
        _check_principal(name)
        _check_actor(actor)
        self._store.principal_row(name)

        def change(conn: sa.Connection) -> None:
            query = sa.select(principals).where(principals.c.name == name)
            row = conn.execute(query).first()
            if row is None:
                raise NotFound(f"principal {name!r}: no such principal")
            self._store.reseal(conn, principals, row, {"disabled": True})

        self._store.apply(actor, "principal.disable", f"principal:{name}", {}, change)

    # -- grants ---------------------------------------------------------------------------

    @staticmethod
    def _grant_where(
        principal: str, role: str, resource_type: str, resource: str
    ) -> sa.ColumnElement[bool]:
        g = grants_table.c
        return sa.and_(
            g.principal == principal,
            g.role == role,
            g.resource_type == resource_type,
            g.resource == resource,
        )

    def grant(
        self,
        principal: str,
        role: str,
        *,
        resource_type: str = "*",
        resource: str = "*",
        actor: str,
    ) -> None:
        """Give ``principal`` the ``role`` on a scope. Refused if it already holds exactly that."""
        _check_grant(principal, role, resource_type, resource, actor)
        self._store.principal_row(principal)
        where = self._grant_where(principal, role, resource_type, resource)
        with self._engine.connect() as conn:
            if conn.execute(sa.select(grants_table.c.id).where(where)).first() is not None:
                raise ConfigError(
                    f"grant: {principal!r} already holds {role!r} on {resource_type}:{resource}"
                )
        created = _iso(self._store.now())

        def change(conn: sa.Connection) -> None:
            values = {
                "principal": principal,
                "role": role,
                "resource_type": resource_type,
                "resource": resource,
                "created": created,
            }
            conn.execute(sa.insert(grants_table).values(**self._rows.sealed("grants", values)))

        details = {"role": role, "resource_type": resource_type, "resource": resource}
        self._store.apply(actor, "grant.add", f"principal:{principal}", details, change)

    def revoke_grant(
        self,
        principal: str,
        role: str,
        *,
        resource_type: str = "*",
        resource: str = "*",
        actor: str,
    ) -> None:
        """Take a grant away, and revoke the tokens no remaining grant covers."""
        _check_grant(principal, role, resource_type, resource, actor)
        where = self._grant_where(principal, role, resource_type, resource)
        g, t = grants_table.c, tokens.c
        with self._engine.connect() as conn:
            if conn.execute(sa.select(g.id).where(where)).first() is None:
                raise NotFound(
                    f"grant: {principal!r} holds no {role!r} on {resource_type}:{resource}"
                )
            others = conn.execute(
                sa.select(g.resource_type, g.resource).where(
                    g.principal == principal, g.role == role, sa.not_(where)
                )
            ).all()
            live = conn.execute(
                sa.select(t.id, t.resource_type, t.resource).where(
                    t.principal == principal, t.role == role, t.revoked.is_(None)
                )
            ).all()
        orphaned = sorted(
            tok.id
            for tok in live
            if not any(
                covers(o.resource_type, o.resource, tok.resource_type, tok.resource) for o in others
            )
        )
        revoked = _iso(self._store.now())

        def change(conn: sa.Connection) -> None:
            if conn.execute(sa.delete(grants_table).where(where)).rowcount != 1:
                raise NotFound(f"grant: {principal!r} holds no {role!r} on this scope")
            if orphaned:
                query = sa.select(tokens).where(t.id.in_(orphaned), t.revoked.is_(None))
                for row in conn.execute(query).all():
                    self._store.reseal(conn, tokens, row, {"revoked": revoked})

        details = {
            "role": role,
            "resource_type": resource_type,
            "resource": resource,
            "tokens_revoked": orphaned,
        }
        self._store.apply(actor, "grant.revoke", f"principal:{principal}", details, change)

    def grants(self, principal: str | None = None) -> list[Grant]:
        """Every grant, or those of one principal."""
        query = sa.select(grants_table).order_by(grants_table.c.principal, grants_table.c.id)
        if principal is not None:
            _check_principal(principal)
            self._store.principal_row(principal)
            query = query.where(grants_table.c.principal == principal)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        for r in rows:  # a token is never issued on a forged grant
            self._rows.check("grants", r._mapping)
        return [Grant(r.principal, r.role, r.resource_type, r.resource, r.created) for r in rows]

    def permissions(self, role: str) -> frozenset[str]:
        """The permissions ``role`` holds, as the database's policy says (``*`` = all).

        Every row is checked against its MAC first: a forged one refuses the role
        (:class:`~bastion.errors.ForgedCredential`, audited) rather than widen it.
        """
        _check_role(role)
        query = sa.select(role_permissions).where(role_permissions.c.role == role)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        for r in rows:
            bad = self._rows.bad("role_permissions", r._mapping)
            if bad is not None:
                raise self._store.refuse(bad, f"permissions of role {role}")
        return frozenset(r.permission for r in rows)

    # -- tokens ---------------------------------------------------------------------------

    def create_token(
        self,
        principal: str,
        role: str,
        *,
        resource_type: str = "*",
        resource: str = "*",
        expires_in: timedelta = timedelta(days=90),
        description: str = "",
        actor: str,
    ) -> IssuedToken:
        """Issue a token for a role the principal holds on a scope its grant covers."""
        _check_grant(principal, role, resource_type, resource, actor)
        _check_token_terms(expires_in, description)
        if self._store.principal_row(principal).disabled:
            raise AccessDenied(f"principal {principal!r} is disabled; no tokens can be made")
        held = [
            g
            for g in self.grants(principal)
            if g.role == role and covers(g.resource_type, g.resource, resource_type, resource)
        ]
        if not held:
            raise AccessDenied(
                f"principal {principal!r} holds no grant of role {role!r} covering"
                f" {resource_type}:{resource}; a token cannot exceed its principal's grants"
            )
        issued, row = new_token(
            principal, role, resource_type, resource, self._store.now(), expires_in, description
        )

        def change(conn: sa.Connection) -> None:
            conn.execute(sa.insert(tokens).values(**self._rows.sealed("tokens", row)))

        details = {
            "principal": principal,
            "role": role,
            "resource_type": resource_type,
            "resource": resource,
            "expires": issued.expires,
            "description": description,
        }
        self._store.apply(actor, "token.create", f"token:{issued.id}", details, change)
        return issued

    def authenticate(self, token: str) -> Identity:
        """The identity a token proves, or one bland AuthError whatever is wrong with it."""
        return self._tokens.authenticate(token)

    def authorize(
        self,
        identity: Identity,
        permission: str,
        *,
        resource_type: str | None = None,
        resource: str | None = None,
    ) -> None:
        """Raise AccessDenied unless ``identity`` may do ``permission`` on the resource."""
        _check_target(resource_type, resource)
        target = f"{resource_type}:{resource or '*'}" if resource_type else "(global)"
        denied = AccessDenied(
            f"principal {identity.principal!r} (role {identity.role}) may not {permission}"
            f" on {target}"
        )
        held = self.permissions(identity.role)
        if "*" not in held and permission not in held:
            raise denied
        if not covers(identity.resource_type, identity.resource, resource_type, resource):
            raise denied

    def check(
        self,
        token: str,
        permission: str,
        *,
        resource_type: str | None = None,
        resource: str | None = None,
    ) -> Identity:
        """Authenticate ``token`` and authorize ``permission``; return the identity."""
        identity = self.authenticate(token)
        self.authorize(identity, permission, resource_type=resource_type, resource=resource)
        return identity

    def list_tokens(self, principal: str | None = None) -> list[TokenInfo]:
        """Every token, or one principal's, oldest first; never a secret or its hash."""
        t = tokens.c
        query = sa.select(
            t.id, t.principal, t.role, t.resource_type, t.resource,
            t.created, t.expires, t.revoked, t.description,
        ).order_by(t.created, t.id)  # fmt: skip
        if principal is not None:
            _check_principal(principal)
            self._store.principal_row(principal)
            query = query.where(t.principal == principal)
        with self._engine.connect() as conn:
            return [TokenInfo(*row) for row in conn.execute(query).all()]

    def revoke_token(self, token_id: str, *, actor: str) -> None:
        """Revoke a token at once. Revoking a revoked token changes nothing."""
        _check_token_id(token_id)
        _check_actor(actor)
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(tokens.c.principal, tokens.c.role).where(tokens.c.id == token_id)
            ).first()
        if row is None:
            raise NotFound(f"token {token_id}: no such token")

        revoked = _iso(self._store.now())

        def change(conn: sa.Connection) -> None:
            query = sa.select(tokens).where(tokens.c.id == token_id, tokens.c.revoked.is_(None))
            current = conn.execute(query).first()
            if current is not None:
                self._store.reseal(conn, tokens, current, {"revoked": revoked})

        details = {"principal": row.principal, "role": row.role}
        self._store.apply(actor, "token.revoke", f"token:{token_id}", details, change)
