"""What access control hands back: frozen records of principals, grants and tokens.

None holds a secret or a hash, except :attr:`IssuedToken.token`, the token's text, shown once
when it is made and left out of ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Grant", "Identity", "IssuedToken", "Principal", "TokenInfo"]


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
