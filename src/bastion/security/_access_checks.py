"""The vocabulary of access control and the checks of every value a caller passes it.

Roles, resource types, principal kinds and the longest token lifetime; a check per kind of
value (a principal's name, a role, a scope, a resource, an actor, a token's terms and id),
each returning the value or raising :class:`~bastion.errors.ConfigError` that names the
field, what was expected and what was given (cut to 80 characters). Public input only: a
secret is never checked here, nor shown.
"""

from __future__ import annotations

import re
from datetime import timedelta

from bastion.errors import ConfigError

__all__ = [
    "MAX_TOKEN_LIFETIME",
    "PRINCIPAL_KINDS",
    "RESOURCE_TYPES",
    "ROLES",
    "check_actor",
    "check_grant",
    "check_kind",
    "check_principal",
    "check_resource",
    "check_role",
    "check_scope",
    "check_target",
    "check_token_id",
    "check_token_terms",
    "show",
]

ROLES: tuple[str, ...] = ("admin", "data-steward", "ml-engineer", "approver", "auditor", "consumer")
RESOURCE_TYPES: tuple[str, ...] = ("*", "dataset", "model", "deployment")
PRINCIPAL_KINDS: tuple[str, ...] = ("person", "service")
MAX_TOKEN_LIFETIME = timedelta(days=365)

_PRINCIPAL = re.compile(r"[a-z0-9][a-z0-9._@-]{0,127}")
_RESOURCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:/+-]{0,255}")
_TOKEN_ID = re.compile(r"[0-9a-f]{16}")


def show(value: object) -> str:
    """``repr(value)``, cut to 80 characters, for an error message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_grant(principal: str, role: str, resource_type: str, resource: str, actor: str) -> None:
    """The values naming a grant, and who acts."""
    check_principal(principal)
    check_role(role)
    check_scope(resource_type, resource)
    check_actor(actor)


def check_principal(name: object, field_name: str = "principal") -> str:
    """A principal's name: 1-128 of a-z 0-9 . _ @ -, starting with a letter or digit."""
    if not isinstance(name, str) or not _PRINCIPAL.fullmatch(name):
        raise ConfigError(
            f"{field_name}: expected 1-128 of a-z 0-9 . _ @ - (starting with a letter or"
            f" digit), got {show(name)}"
        )
    return name


def check_kind(kind: object) -> str:
    """A principal's kind: one of :data:`PRINCIPAL_KINDS`."""
    if kind not in PRINCIPAL_KINDS:
        raise ConfigError(f"kind: expected one of {', '.join(PRINCIPAL_KINDS)}, got {show(kind)}")
    return str(kind)


def check_role(role: object) -> str:
    """One of :data:`ROLES`."""
    if role not in ROLES:
        raise ConfigError(f"role: expected one of {', '.join(ROLES)}, got {show(role)}")
    return str(role)


def check_scope(resource_type: object, resource: object) -> tuple[str, str]:
    """A grant's or a token's scope: ``("*", "*")``, ``(type, "*")`` or ``(type, name)``."""
    if resource_type not in RESOURCE_TYPES:
        types = ", ".join(RESOURCE_TYPES)
        raise ConfigError(f"resource_type: expected one of {types}, got {show(resource_type)}")
    if resource_type == "*" and resource != "*":
        raise ConfigError(f"resource: expected '*' when resource_type is '*', got {show(resource)}")
    if resource != "*":
        check_resource(resource)
    return str(resource_type), str(resource)


def check_resource(resource: object) -> str:
    """A resource's name: 1-256 of A-Z a-z 0-9 . _ @ : / + -."""
    if not isinstance(resource, str) or not _RESOURCE.fullmatch(resource):
        raise ConfigError(
            "resource: expected '*' or a name of 1-256 of A-Z a-z 0-9 . _ @ : / + -,"
            f" got {show(resource)}"
        )
    return resource


def check_target(resource_type: object, resource: object) -> None:
    """What an action is on: nothing (both None), every resource of a type, or one."""
    if resource_type is not None and resource_type not in RESOURCE_TYPES[1:]:
        raise ConfigError(
            f"resource_type: expected one of {', '.join(RESOURCE_TYPES[1:])} or None,"
            f" got {show(resource_type)}"
        )
    if resource is not None:
        if resource_type is None:
            raise ConfigError("resource: a resource needs its resource_type")
        check_resource(resource)


def check_actor(actor: object) -> str:
    """Who acts, as the audit log names them: 1-128 printable characters."""
    if not isinstance(actor, str) or not 0 < len(actor) <= 128 or not actor.isprintable():
        raise ConfigError(f"actor: expected 1-128 printable characters, got {show(actor)}")
    return actor


def check_token_terms(expires_in: timedelta, description: object) -> None:
    """A new token's lifetime (at most :data:`MAX_TOKEN_LIFETIME`) and its description."""
    if not timedelta(0) < expires_in <= MAX_TOKEN_LIFETIME:
        raise ConfigError(
            f"expires_in: expected more than 0 and at most {MAX_TOKEN_LIFETIME.days} days,"
            f" got {expires_in}"
        )
    if not isinstance(description, str) or len(description) > 256:
        raise ConfigError("description: expected at most 256 characters")
    if not description.isprintable():
        raise ConfigError("description: expected printable characters only")


def check_token_id(token_id: object) -> str:
    """A token's public id: 16 lowercase hex characters."""
    if not isinstance(token_id, str) or not _TOKEN_ID.fullmatch(token_id):
        raise ConfigError(f"token_id: expected 16 lowercase hex characters, got {show(token_id)}")
    return token_id
