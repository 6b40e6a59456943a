"""API tokens: their text and secrets, what is shown of them, and authentication.

Token text is ``bst_<id>_<secret>``: a random public id (16 hex, the lookup key) and a
256-bit secret from :mod:`secrets` (base64url, no padding). The database keeps only the
SHA-256 of the secret. :class:`TokenAuthenticator` makes one query (:data:`LOOKUP`: the token
row by id, joined with its principal's row and the principal's grants that cover the token's
scope), then hashes the presented secret and compares it with :func:`hmac.compare_digest` —
against a random dummy hash when the id is unknown or the text is malformed, so the work done
does not reveal which ids exist. Every failure (wrong, unknown, malformed, expired, revoked,
principal disabled, grant revoked) is the same bland :class:`~bastion.errors.AuthError`.

Every one of those rows carries a MAC (:mod:`bastion.security.rows`) and is checked before it
is believed: a token whose row, principal or grants do not check is refused with
:class:`~bastion.errors.ForgedCredential` (401 at the server, exit 1 at the CLI,
:class:`~bastion.errors.AccessDenied` in the API), and the refusal is audited as
``row.refused`` naming the row. A token living longer than :data:`MAX_TOKEN_LIFETIME` from its
creation is refused whatever its row says. :func:`new_token` makes a token and the row that
keeps it; :class:`~bastion.security.access.AccessControl` seals and writes it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from itertools import chain
from typing import Any

import sqlalchemy as sa

from bastion.errors import AuthError
from bastion.security._access_checks import MAX_TOKEN_LIFETIME
from bastion.security.access_records import Identity, IssuedToken
from bastion.security.access_store import AccessStore, iso
from bastion.security.schema import grants as grants_table
from bastion.security.schema import principals, tokens
from bastion.security.scope import covers_clause

__all__ = ["LOOKUP", "TokenAuthenticator", "TokenLookup", "new_token", "unpack"]

_SKEW = timedelta(minutes=5)  # a token "created" further in the future than this is refused
_TOKEN = re.compile(r"bst_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_BLAND = "invalid or expired token"
# Compared against when the id is unknown; no secret hashes to it (it is random).
_DUMMY_HASH = hashlib.sha256(secrets.token_bytes(32)).digest()


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


def new_token(
    principal: str,
    role: str,
    resource_type: str,
    resource: str,
    now: datetime,
    expires_in: timedelta,
    description: str,
) -> tuple[IssuedToken, dict[str, Any]]:
    """A fresh token, its text shown once, and the row that keeps it (unsealed; the secret
    only as its SHA-256). The values are checked by the caller."""
    token_id = secrets.token_hex(8)
    secret, digest = _new_secret()
    expires = iso(now + expires_in)
    row = {
        "id": token_id,
        "principal": principal,
        "role": role,
        "resource_type": resource_type,
        "resource": resource,
        "secret_hash": digest,
        "created": iso(now),
        "expires": expires,
        "revoked": None,
        "description": description,
    }
    issued = IssuedToken(
        token_id, f"bst_{token_id}_{secret}", principal, role, resource_type, resource, expires
    )
    return issued, row


# The one query authentication makes: the token by id (its primary key), joined with its
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
LOOKUP = (
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


class TokenLookup:
    """:data:`LOOKUP` compiled once for the engine's dialect and run on a pooled DBAPI
    connection, with each column's own result processing: the same rows as
    ``conn.execute(LOOKUP, ...).all()`` (tested on SQLite and PostgreSQL) at about a third
    of the cost, on the path every request takes."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        compiled = LOOKUP.compile(dialect=engine.dialect)
        self._sql = str(compiled)
        fixed = compiled.construct_params({"token_id": ""})
        self._positional = compiled.positional
        self._order = list(compiled.positiontup or [])
        self._fixed = dict(fixed)
        self._process = [
            column.type.result_processor(engine.dialect, None) for column in LOOKUP.selected_columns
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


def unpack(row: Any) -> dict[str, dict[str, Any]]:
    """One row of the lookup as {table: that table's columns}; no "grants" if none covers."""
    parts = {name: dict(zip(cols, row[where], strict=True)) for name, cols, where in _SLICES}
    if parts["grants"]["principal"] is None:
        del parts["grants"]
    return parts


class TokenAuthenticator:
    """Token text to the :class:`Identity` it proves, every row checked before it is believed."""

    def __init__(self, store: AccessStore) -> None:
        self._store = store
        self._verified: set[Any] = set()  # token lookups whose rows all checked
        self._lookup = TokenLookup(store.engine)

    def authenticate(self, token: str) -> Identity:
        """The identity ``token`` proves, or one bland AuthError whatever is wrong with it
        (:class:`~bastion.errors.ForgedCredential` for a row that does not check)."""
        now = self._store.now()
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
            self._store.audit.record(
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
        found = [unpack(r) for r in rows]
        token_id = found[0]["tokens"]["id"]
        for parts in found:
            for table, values in parts.items():
                bad = self._store.rows.bad(table, values)
                if bad is not None:
                    raise self._store.refuse(bad, f"token {token_id}")
        if memo is not None:
            if len(self._verified) >= 4096:
                self._verified.clear()
            self._verified.add(memo)
