# Over 400 lines, because one service whose every write keeps row MACs and access state.
"""Access control: principals, roles, grants of roles on scopes, and API tokens.

The model::

    principal (person | service)  ──grant──>  role  on  scope (resource_type, resource)
    role ──role_permissions (data, seeded by migration 0001; "*" = everything)──> permissions
    token = (principal, role, scope), never wider than one of the principal's grants

A scope is ``("*", "*")`` (everything), ``(type, "*")`` (every dataset, model or
deployment) or ``(type, name)`` (one of them). A token scoped to deployment ``D`` authorizes
actions on ``D`` only: another deployment, another type, or an action on no resource at all
is :class:`~bastion.errors.AccessDenied`.

Token text is ``bst_<id>_<secret>``: a random public id (16 hex, the lookup key) and a
256-bit secret from :mod:`secrets` (base64url, no padding). The database keeps only the
SHA-256 of the secret. :meth:`AccessControl.authenticate` makes one query (four indexed
branches of a ``UNION ALL``) for the token row, its principal's row, the principal's grants of
the token's role and that role's permissions, then hashes the presented secret and compares
it with :func:`hmac.compare_digest` — against a random dummy hash when the id is unknown or
the text is malformed, so the work done does not reveal which ids exist. Every failure
(wrong, unknown, malformed, expired, revoked, principal disabled, grant revoked) is the same
bland :class:`~bastion.errors.AuthError`.

Every one of those rows carries a MAC (:mod:`bastion.security.rows`) and is checked before it
is believed: a token whose row, principal, grants or role permissions do not check is refused
with :class:`~bastion.errors.ForgedCredential` (401 at the server, exit 1 at the CLI,
:class:`~bastion.errors.AccessDenied` in the API), and the refusal is audited as
``row.refused`` naming the row. A token living longer than :data:`MAX_TOKEN_LIFETIME` from its
creation is refused whatever its row says. Writes seal the rows they make or change; an
update re-seals a row only if it checked before (it never launders a forged one).

Replay and deletion: a row MAC cannot tell the current row from an older genuine copy, so
a workspace's access control also keeps the access state (:mod:`bastion.security.
access_state`): every write below takes its lock, refuses to change a database that does
not match it, and seals the rows as the write leaves them, in the same transaction path.

Audit: every state change is validated first, then applied and recorded in ONE transaction
(:meth:`~bastion.security.sink.AuditSink.record_in`): the change and its audit entry commit
together or not at all. If the entry cannot be written, :class:`~bastion.errors.AuditError`
rolls the change back (fail closed). Reads and authorization decisions are not recorded
here; the workspace and the server do that.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from bastion.errors import AccessDenied, AuthError, ConfigError, ForgedCredential, NotFound
from bastion.security.access_state import AccessState
from bastion.security.rows import BadRow, RowMac
from bastion.security.schema import grants as grants_table
from bastion.security.schema import principals, role_permissions, tokens
from bastion.security.scope import covers, covers_clause
from bastion.security.sink import AuditSink

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

ROLES: tuple[str, ...] = ("admin", "data-steward", "ml-engineer", "approver", "auditor", "consumer")
RESOURCE_TYPES: tuple[str, ...] = ("*", "dataset", "model", "deployment")
PRINCIPAL_KINDS: tuple[str, ...] = ("person", "service")
MAX_TOKEN_LIFETIME = timedelta(days=365)
_SKEW = timedelta(minutes=5)  # a token "created" further in the future than this is refused

_PRINCIPAL = re.compile(r"[a-z0-9][a-z0-9._@-]{0,127}")
_RESOURCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:/+-]{0,255}")
_TOKEN_ID = re.compile(r"[0-9a-f]{16}")
_TOKEN = re.compile(r"bst_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_BLAND = "invalid or expired token"
# Compared against when the id is unknown; no secret hashes to it (it is random).
_DUMMY_HASH = hashlib.sha256(secrets.token_bytes(32)).digest()


def _now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling, as proven by a token: the principal, its role and the token's scope."""

    principal: str
    role: str
    resource_type: str
    resource: str
    token_id: str | None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token. ``token`` is shown once and never stored; it is left out of ``repr``."""

    id: str
    token: str = field(repr=False)
    principal: str
    role: str
    resource_type: str
    resource: str
    expires: str


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What may be shown about a token: no secret, no hash."""

    id: str
    principal: str
    role: str
    resource_type: str
    resource: str
    created: str
    expires: str
    revoked: str | None
    description: str


@dataclass(frozen=True, slots=True)
class Principal:
    """A person or a service that can hold grants and tokens."""

    name: str
    kind: str
    created: str
    disabled: bool


@dataclass(frozen=True, slots=True)
class Grant:
    """A role held by a principal on a scope."""

    principal: str
    role: str
    resource_type: str
    resource: str
    created: str


# -- validation ---------------------------------------------------------------------------


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_grant(principal: str, role: str, resource_type: str, resource: str, actor: str) -> None:
    _check_principal(principal)
    _check_role(role)
    _check_scope(resource_type, resource)
    _check_actor(actor)


def _check_principal(name: object, field_name: str = "principal") -> str:
    if not isinstance(name, str) or not _PRINCIPAL.fullmatch(name):
        raise ConfigError(
            f"{field_name}: expected 1-128 of a-z 0-9 . _ @ - (starting with a letter or"
            f" digit), got {_show(name)}"
        )
    return name


def _check_role(role: object) -> str:
    if role not in ROLES:
        raise ConfigError(f"role: expected one of {', '.join(ROLES)}, got {_show(role)}")
    return str(role)


def _check_scope(resource_type: object, resource: object) -> tuple[str, str]:
    if resource_type not in RESOURCE_TYPES:
        types = ", ".join(RESOURCE_TYPES)
        raise ConfigError(f"resource_type: expected one of {types}, got {_show(resource_type)}")
    if resource_type == "*" and resource != "*":
        raise ConfigError(
            f"resource: expected '*' when resource_type is '*', got {_show(resource)}"
        )
    if resource != "*":
        _check_resource(resource)
    return str(resource_type), str(resource)


def _check_resource(resource: object) -> str:
    if not isinstance(resource, str) or not _RESOURCE.fullmatch(resource):
        raise ConfigError(
            "resource: expected '*' or a name of 1-256 of A-Z a-z 0-9 . _ @ : / + -,"
            f" got {_show(resource)}"
        )
    return resource


def _check_actor(actor: object) -> str:
    if not isinstance(actor, str) or not 0 < len(actor) <= 128 or not actor.isprintable():
        raise ConfigError(f"actor: expected 1-128 printable characters, got {_show(actor)}")
    return actor


def _secret_hash(secret: str) -> bytes | None:
    """SHA-256 of the raw secret, or None if ``secret`` is not its canonical base64url."""
    try:
        raw = base64.urlsafe_b64decode(secret + "=")
    except (binascii.Error, ValueError):
        return None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != secret:
        return None
    # A fast hash is right here: the secret has 256 bits of entropy, so there is nothing to
    # brute-force, and a slow KDF would only make every request (and a DoS) expensive.
    return hashlib.sha256(raw).digest()


def _new_secret() -> tuple[str, bytes]:
    """256 random bits as canonical base64url, and the SHA-256 the row keeps."""
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
    digest = _secret_hash(secret)
    if digest is None:  # cannot happen: we made the canonical encoding ourselves
        raise RuntimeError("token secret encoding is not canonical")
    return secret, digest


def _check_token_terms(expires_in: timedelta, description: object) -> None:
    if not timedelta(0) < expires_in <= MAX_TOKEN_LIFETIME:
        raise ConfigError(
            f"expires_in: expected more than 0 and at most {MAX_TOKEN_LIFETIME.days} days,"
            f" got {expires_in}"
        )
    if not isinstance(description, str) or len(description) > 256:
        raise ConfigError("description: expected at most 256 characters")
    if not description.isprintable():
        raise ConfigError("description: expected printable characters only")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


# The one query authenticate() makes: the token by id (its primary key), joined with its
# principal and with each grant of the principal that covers the token's scope (none: one
# row with the grant's columns NULL). Every row is read whole, MAC included, so each can be
# checked before it is believed.
_t, _p, _g = tokens.c, principals.c, grants_table.c
_COVERS = sa.and_(
    _g.principal == _t.principal,
    _g.role == _t.role,
    covers_clause(_g.resource_type, _g.resource, _t.resource_type, _t.resource),
)
_PARTS = (("tokens", tokens), ("principals", principals), ("grants", grants_table))
_LOOKUP = (
    sa.select(*(c for _n, table in _PARTS for c in table.c if c.name != "id" or table is tokens))
    .select_from(tokens.join(principals, _p.name == _t.principal).outerjoin(grants_table, _COVERS))
    .where(_t.id == sa.bindparam("token_id"))
)
_SLICES: list[tuple[str, tuple[str, ...], slice]] = []
_at = 0
for _name, _table in _PARTS:
    _cols = tuple(c.name for c in _table.c if c.name != "id" or _table is tokens)
    _SLICES.append((_name, _cols, slice(_at, _at + len(_cols))))
    _at += len(_cols)


_HASH = _SLICES[0][1].index("secret_hash")
_AT_ID, _AT_PRINCIPAL, _AT_ROLE, _AT_RTYPE, _AT_RESOURCE, _AT_REVOKED, _AT_CREATED, _AT_EXPIRES = (
    _SLICES[0][1].index(name)
    for name in (
        "id",
        "principal",
        "role",
        "resource_type",
        "resource",
        "revoked",
        "created",
        "expires",
    )
)


@functools.lru_cache(maxsize=4096)
def _moments(created: str, expires: str) -> tuple[datetime, datetime]:
    """A token row's issue and expiry times (parsed once per distinct pair)."""
    return datetime.fromisoformat(created), datetime.fromisoformat(expires)


_DISABLED = _SLICES[1][2].start + _SLICES[1][1].index("disabled")
_GRANTED = _SLICES[2][2].start + _SLICES[2][1].index("principal")


class _RawLookup:
    """:data:`_LOOKUP` compiled once for the engine's dialect and run on a pooled DBAPI
    connection, with each column's own result processing: the same rows as
    ``conn.execute(_LOOKUP, ...).all()`` (tested on SQLite and PostgreSQL) at about a third
    of the cost, on the path every request takes."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        compiled = _LOOKUP.compile(dialect=engine.dialect)
        self._sql = str(compiled)
        fixed = compiled.construct_params({"token_id": ""})
        self._positional = compiled.positional
        self._order = list(compiled.positiontup or [])
        self._fixed = dict(fixed)
        self._process = [
            column.type.result_processor(engine.dialect, None)
            for column in _LOOKUP.selected_columns
        ]

    def _params(self, token_id: str) -> Any:
        if self._positional:
            return tuple(token_id if k == "token_id" else self._fixed[k] for k in self._order)
        return {**self._fixed, "token_id": token_id}

    def __call__(self, token_id: str) -> list[tuple[Any, ...]]:
        params = self._params(token_id)
        dbapi_error = self._engine.dialect.loaded_dbapi.Error
        raw = self._engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute(self._sql, params)
                fetched = cursor.fetchall()
            finally:
                cursor.close()
        except dbapi_error as exc:  # the error SQLAlchemy would have raised
            raise sa.exc.DBAPIError.instance(self._sql, params, exc, dbapi_error) from exc
        finally:
            raw.close()
        process = self._process
        return [
            tuple(v if p is None else p(v) for p, v in zip(process, row, strict=True))
            for row in fetched
        ]


def _unpack(row: Any) -> dict[str, dict[str, Any]]:
    """One row of the lookup as {table: that table's columns}; no "grants" if none covers."""
    parts = {name: dict(zip(cols, row[where], strict=True)) for name, cols, where in _SLICES}
    if parts["grants"]["principal"] is None:
        del parts["grants"]
    return parts


class AccessControl:
    """Principals, grants and tokens in the metadata database; every change audited."""

    def __init__(
        self,
        engine: sa.Engine,
        audit: AuditSink,
        *,
        rows: RowMac,
        state: AccessState | None = None,
        clock: Callable[[], datetime] = _now_utc,
    ) -> None:
        """``state``: the home's sealed access state, which every write keeps (a workspace
        always passes it); without one, rows are authenticated but not their currency."""
        self._engine = engine
        self._audit = audit
        self._rows = rows
        self._state = state
        self._clock = clock
        self._verified: set[Any] = set()  # token lookups whose rows all checked
        self._lookup = _RawLookup(engine)

    def _check_rows(self, rows: Sequence[Any]) -> None:
        """Check every row of a token lookup against its MAC; refuse (audited) if one fails.

        A lookup whose every value (and type) is one that checked before is not re-checked:
        same inputs, same MACs.
        """
        flat = tuple(rows[0]) if len(rows) == 1 else tuple(chain.from_iterable(rows))
        try:
            memo: Any = (len(rows), flat, tuple(map(type, flat)))
            if memo in self._verified:
                return
        except TypeError:  # an unhashable value: check without the memo
            memo = None
        found = [_unpack(r) for r in rows]
        token_id = found[0]["tokens"]["id"]
        for parts in found:
            for table, values in parts.items():
                bad = self._rows.bad(table, values)
                if bad is not None:
                    raise self._refuse(bad, f"token {token_id}")
        if memo is not None:
            if len(self._verified) >= 4096:
                self._verified.clear()
            self._verified.add(memo)

    def _refuse(self, bad: BadRow, use: str) -> ForgedCredential:
        """Audit a row that failed its MAC where a decision needed it; the error to raise."""
        self._audit.record(
            "bastion",
            "row.refused",
            f"{bad.table}:{bad.key}",
            "denied",
            {"table": bad.table, "row": bad.key, "use": use},
        )
        return ForgedCredential(
            f"refused: the {bad.table} row ({bad.key}) does not match its MAC; it was written"
            " or edited outside Bastion (recorded in the audit log)",
            bad.table,
            bad.key,
        )

    def _reseal(
        self, conn: sa.Connection, table: sa.Table, row: Any, changes: Mapping[str, Any]
    ) -> None:
        """Apply ``changes`` to ``row`` (read in this transaction) and re-seal it, unless it
        did not check before: a forged row gets the change but stays forged."""
        values = dict(row._mapping)
        new = {**values, **changes}
        if self._rows.bad(table.name, values) is None:
            new["mac"] = self._rows.mac(table.name, new)
        key = [table.c[c] == values[c] for c in table.primary_key.columns.keys()]
        conn.execute(sa.update(table).where(*key).values(**{k: new[k] for k in (*changes, "mac")}))

    def _now(self) -> datetime:
        moment = self._clock()
        if moment.tzinfo is None:
            raise ConfigError("clock: expected a timezone-aware datetime, got a naive one")
        return moment.astimezone(UTC)

    def _apply(
        self,
        actor: str,
        action: str,
        resource: str,
        details: Mapping[str, Any],
        change: Callable[[sa.Connection], None],
    ) -> None:
        """Apply ``change`` and record it in one transaction: both or neither; with an
        access state, under its lock, refused on a tampered database, and sealed."""
        try:
            if self._state is None:
                with self._engine.begin() as conn:
                    change(conn)
                    self._audit.record_in(conn, actor, action, resource, "ok", details)
                return
            try:
                with self._state.updating(self._engine) as seal, self._engine.begin() as conn:
                    change(conn)
                    self._audit.record_in(conn, actor, action, resource, "ok", details)
                    seal.stage(conn)  # the new state, pending until the commit
            except ForgedCredential as exc:  # the database was rolled back or cut: no write
                self._audit.record(
                    actor, action, resource, "denied", {"reason": "access state", "row": exc.key}
                )
                raise
        except DBIntegrityError:
            raise ConfigError(f"{resource}: conflicts with a concurrent change") from None

    def _principal_row(self, name: str) -> sa.Row[Any]:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(principals).where(principals.c.name == name)).first()
        if row is None:
            raise NotFound(f"principal {name!r}: no such principal")
        self._rows.check("principals", row._mapping)
        return row

    # -- principals -----------------------------------------------------------------------

    def add_principal(self, name: str, kind: str = "person", *, actor: str) -> None:
        """Register a person or service. Refused if the name is taken."""
        _check_principal(name, "name")
        if kind not in PRINCIPAL_KINDS:
            raise ConfigError(
                f"kind: expected one of {', '.join(PRINCIPAL_KINDS)}, got {_show(kind)}"
            )
        _check_actor(actor)
        with self._engine.connect() as conn:
            taken = conn.execute(sa.select(principals.c.name).where(principals.c.name == name))
            if taken.first() is not None:
                raise ConfigError(f"name: principal {name!r} already exists")
        created = _iso(self._now())

        def change(conn: sa.Connection) -> None:
            values = {"name": name, "kind": kind, "created": created, "disabled": False}
            conn.execute(sa.insert(principals).values(**self._rows.sealed("principals", values)))

        self._apply(actor, "principal.add", f"principal:{name}", {"kind": kind}, change)

    def list_principals(self) -> list[Principal]:
        """Every principal, by name."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(principals).order_by(principals.c.name)).all()
        return [Principal(r.name, r.kind, r.created, bool(r.disabled)) for r in rows]

    def disable_principal(self, name: str, *, actor: str) -> None:
        """Disable a principal: from now on every one of its tokens fails to authenticate."""
        _check_principal(name)
        _check_actor(actor)
        self._principal_row(name)

        def change(conn: sa.Connection) -> None:
            query = sa.select(principals).where(principals.c.name == name)
            row = conn.execute(query).first()
            if row is None:
                raise NotFound(f"principal {name!r}: no such principal")
            self._reseal(conn, principals, row, {"disabled": True})

        self._apply(actor, "principal.disable", f"principal:{name}", {}, change)

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
        self._principal_row(principal)
        where = self._grant_where(principal, role, resource_type, resource)
        with self._engine.connect() as conn:
            if conn.execute(sa.select(grants_table.c.id).where(where)).first() is not None:
                raise ConfigError(
                    f"grant: {principal!r} already holds {role!r} on {resource_type}:{resource}"
                )
        created = _iso(self._now())

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
        self._apply(actor, "grant.add", f"principal:{principal}", details, change)

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
        revoked = _iso(self._now())

        def change(conn: sa.Connection) -> None:
            if conn.execute(sa.delete(grants_table).where(where)).rowcount != 1:
                raise NotFound(f"grant: {principal!r} holds no {role!r} on this scope")
            if orphaned:
                query = sa.select(tokens).where(t.id.in_(orphaned), t.revoked.is_(None))
                for row in conn.execute(query).all():
                    self._reseal(conn, tokens, row, {"revoked": revoked})

        details = {
            "role": role,
            "resource_type": resource_type,
            "resource": resource,
            "tokens_revoked": orphaned,
        }
        self._apply(actor, "grant.revoke", f"principal:{principal}", details, change)

    def grants(self, principal: str | None = None) -> list[Grant]:
        """Every grant, or those of one principal."""
        query = sa.select(grants_table).order_by(grants_table.c.principal, grants_table.c.id)
        if principal is not None:
            _check_principal(principal)
            self._principal_row(principal)
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
                raise self._refuse(bad, f"permissions of role {role}")
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
        if self._principal_row(principal).disabled:
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
        token_id = secrets.token_hex(8)
        secret, digest = _new_secret()
        now = self._now()
        expires = _iso(now + expires_in)
        row = {
            "id": token_id,
            "principal": principal,
            "role": role,
            "resource_type": resource_type,
            "resource": resource,
            "secret_hash": digest,
            "created": _iso(now),
            "expires": expires,
            "revoked": None,
            "description": description,
        }

        def change(conn: sa.Connection) -> None:
            conn.execute(sa.insert(tokens).values(**self._rows.sealed("tokens", row)))

        details = {
            "principal": principal,
            "role": role,
            "resource_type": resource_type,
            "resource": resource,
            "expires": expires,
            "description": description,
        }
        self._apply(actor, "token.create", f"token:{token_id}", details, change)
        return IssuedToken(
            token_id, f"bst_{token_id}_{secret}", principal, role, resource_type, resource, expires
        )

    def authenticate(self, token: str) -> Identity:
        """The identity a token proves, or one bland AuthError whatever is wrong with it."""
        now = self._now()
        match = _TOKEN.fullmatch(token) if isinstance(token, str) else None
        rows: Sequence[Any] = ()
        presented = None
        if match is not None:
            rows = self._lookup(match.group(1))
            presented = _secret_hash(match.group(2))
        # Always hash-and-compare, against a dummy when there is no row, so an unknown id
        # costs what a known one does.
        stored = rows[0][_HASH] if rows else _DUMMY_HASH
        if not isinstance(stored, bytes):
            stored = _DUMMY_HASH
        same = hmac.compare_digest(presented or hashlib.sha256(b"").digest(), stored)
        if not rows:
            raise AuthError(_BLAND)
        # Every row is checked before any of it is believed (the secret compare above only
        # spent constant work on it): the token, its principal, each covering grant.
        self._check_rows(rows)
        if not same or presented is None:
            raise AuthError(_BLAND)
        first = rows[0]
        if first[_AT_REVOKED] is not None or first[_DISABLED] or first[_GRANTED] is None:
            raise AuthError(_BLAND)
        try:
            created, expires = _moments(first[_AT_CREATED], first[_AT_EXPIRES])
            overlong = expires - created > MAX_TOKEN_LIFETIME or created > now + _SKEW
        except (TypeError, ValueError):
            raise AuthError(_BLAND) from None
        if overlong:  # whatever the row says, and even with a good MAC
            self._audit.record(
                "bastion",
                "token.refused",
                f"token:{first[_AT_ID]}",
                "denied",
                {"reason": f"lifetime over {MAX_TOKEN_LIFETIME.days} days or issued in future"},
            )
            raise AuthError(_BLAND)
        if now >= expires:
            raise AuthError(_BLAND)
        return Identity(
            first[_AT_PRINCIPAL],
            first[_AT_ROLE],
            first[_AT_RTYPE],
            first[_AT_RESOURCE],
            first[_AT_ID],
        )

    def authorize(
        self,
        identity: Identity,
        permission: str,
        *,
        resource_type: str | None = None,
        resource: str | None = None,
    ) -> None:
        """Raise AccessDenied unless ``identity`` may do ``permission`` on the resource."""
        if resource_type is not None and resource_type not in RESOURCE_TYPES[1:]:
            raise ConfigError(
                f"resource_type: expected one of {', '.join(RESOURCE_TYPES[1:])} or None,"
                f" got {_show(resource_type)}"
            )
        if resource is not None:
            if resource_type is None:
                raise ConfigError("resource: a resource needs its resource_type")
            _check_resource(resource)
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
            self._principal_row(principal)
            query = query.where(t.principal == principal)
        with self._engine.connect() as conn:
            return [TokenInfo(*row) for row in conn.execute(query).all()]

    def revoke_token(self, token_id: str, *, actor: str) -> None:
        """Revoke a token at once. Revoking a revoked token changes nothing."""
        if not isinstance(token_id, str) or not _TOKEN_ID.fullmatch(token_id):
            raise ConfigError(
                f"token_id: expected 16 lowercase hex characters, got {_show(token_id)}"
            )
        _check_actor(actor)
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(tokens.c.principal, tokens.c.role).where(tokens.c.id == token_id)
            ).first()
        if row is None:
            raise NotFound(f"token {token_id}: no such token")

        revoked = _iso(self._now())

        def change(conn: sa.Connection) -> None:
            query = sa.select(tokens).where(tokens.c.id == token_id, tokens.c.revoked.is_(None))
            current = conn.execute(query).first()
            if current is not None:
                self._reseal(conn, tokens, current, {"revoked": revoked})

        details = {"principal": row.principal, "role": row.role}
        self._apply(actor, "token.revoke", f"token:{token_id}", details, change)
