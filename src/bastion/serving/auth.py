"""Who is calling, and may they: bearer tokens and OIDC/JWT for the inference server.

``Authorization: Bearer <token>`` carries either

- a **Bastion API token** (``bst_<id>_<secret>``), checked by the workspace's one
  authenticate-and-authorize path (:meth:`~bastion.workspace.Workspace.authenticate` and
  :meth:`~bastion.workspace.Workspace.authorize`, as for the CLI and the Python API).
  Successful lookups are cached for at most ``cache_ttl`` seconds (default 5), keyed by the
  SHA-256 of the token, so the database is not hit on every request: **a revoked token, a
  disabled principal or a revoked grant takes effect within 5 seconds.** Failures are never
  cached (a wrong token costs a lookup every time; rate limits bound that). Authorization
  decisions (``deployment:predict`` on one deployment) are cached the same way.
- an **OIDC/JWT access token**, when the server was given a JWKS (``--jwks FILE|URL``),
  ``--issuer`` and ``--audience``. The signature must be RS256 or ES256 — the list is fixed,
  so ``alg: none`` and HS256 signed with a public key (RSA/HMAC key confusion) are refused —
  and the key is the JWKS entry named by the header's ``kid``; ``exp``, ``nbf``, ``iss``,
  ``aud`` and ``sub`` are required and checked (30 s leeway). Claims that grant access:

  ``roles``
      a list of Bastion role names (``consumer``, ``admin``, ...); the workspace's policy
      says what each role may do.
  ``bastion_deployments``
      a list of deployment names (or ``["*"]``) the caller may use; without it a JWT caller
      may use no deployment unless one of its roles holds every permission (``admin``).

  The audit log names a JWT caller ``oidc:<sub>`` so it is never mistaken for a local
  principal.

Every authentication failure is one :class:`~bastion.errors.AuthError` with one bland
message, whatever the cause; an authenticated caller that may not act gets
:class:`~bastion.errors.AccessDenied`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt

from bastion.errors import AccessDenied, AuthError, ConfigError, Error
from bastion.workspace import covers

if TYPE_CHECKING:
    from bastion.workspace import Identity, Workspace

__all__ = [
    "ALGORITHMS",
    "DEFAULT_CACHE_TTL",
    "OIDC_PREFIX",
    "Authenticator",
    "Caller",
    "JwtSettings",
    "JwtVerifier",
]

ALGORITHMS: tuple[str, ...] = ("RS256", "ES256")
DEFAULT_CACHE_TTL = 5.0
OIDC_PREFIX = "oidc:"  #: a JWT caller's principal is this and its ``sub``
_BLAND = "invalid or expired token"
_MAX_TOKEN = 8192
_MAX_CACHE = 100_000
_LEEWAY = 30


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: the audit name, its roles and, for tokens, the identity."""

    principal: str
    roles: tuple[str, ...]
    via: str  # "token" | "jwt"
    identity: Identity | None = None
    deployments: frozenset[str] = frozenset()  # JWT only: "*" = every deployment


@dataclass(frozen=True, slots=True)
class JwtSettings:
    """Where the signing keys come from and what the token must say."""

    jwks: str  # a file path or an https:// URL
    issuer: str
    audience: str


class JwtVerifier:
    """Verify OIDC access tokens against a JWKS; RS256/ES256 only."""

    def __init__(self, settings: JwtSettings) -> None:
        if not settings.issuer or not settings.audience:
            raise ConfigError("--jwks needs --issuer and --audience as well")
        self.settings = settings
        self._keys = self._load(settings.jwks)

    @staticmethod
    def _load(source: str) -> dict[str, jwt.PyJWK]:
        try:
            if source.startswith("https://"):
                with urllib.request.urlopen(source, timeout=10) as resp:  # noqa: S310
                    raw = resp.read(1 << 20)
            elif source.startswith("http://"):
                raise ConfigError(f"--jwks: expected a file or an https:// URL, got {source}")
            else:
                raw = Path(source).read_bytes()
            doc = json.loads(raw)
            keyset = jwt.PyJWKSet.from_dict(doc)
        except Error:
            raise
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            raise ConfigError(f"--jwks {source}: not a usable JWKS ({exc})") from None
        keys: dict[str, jwt.PyJWK] = {}
        for key in keyset.keys:
            if key.key_id and key.algorithm_name in ALGORITHMS:
                keys[key.key_id] = key
        if not keys:
            raise ConfigError(f"--jwks {source}: no RS256/ES256 key with a 'kid'")
        return keys

    def verify(self, token: str) -> Caller:
        """The caller a valid token names; AuthError (bland) otherwise."""
        try:
            header = jwt.get_unverified_header(token)
            key = self._keys.get(str(header.get("kid")))
            if key is None or header.get("alg") not in ALGORITHMS:
                raise AuthError(_BLAND)
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[key.algorithm_name],
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=_LEEWAY,
                options={"require": ["exp", "nbf", "iss", "aud", "sub"]},
            )
        except (jwt.PyJWTError, ValueError, TypeError):
            raise AuthError(_BLAND) from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > 120 or not sub.isprintable():
            raise AuthError(_BLAND)
        roles = claims.get("roles", [])
        deployments = claims.get("bastion_deployments", [])
        if not isinstance(roles, list) or not isinstance(deployments, list):
            raise AuthError(_BLAND)
        return Caller(
            f"{OIDC_PREFIX}{sub}",
            tuple(str(r) for r in roles),
            "jwt",
            None,
            frozenset(str(d) for d in deployments),
        )


class Authenticator:
    """Authenticate bearer tokens and authorize permissions, with a short-lived cache."""

    def __init__(
        self,
        ws: Workspace,
        *,
        jwt_verifier: JwtVerifier | None = None,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= cache_ttl <= DEFAULT_CACHE_TTL:
            raise ConfigError(f"cache_ttl: expected 0 to 5 seconds, got {cache_ttl}")
        self._ws = ws
        self._jwt = jwt_verifier
        self._ttl = cache_ttl
        self._clock = clock
        self._callers: dict[bytes, tuple[float, Caller]] = {}
        self._decisions: dict[tuple[bytes, str, str, str], tuple[float, bool]] = {}
        self._perms: dict[str, tuple[float, frozenset[str]]] = {}

    @staticmethod
    def bearer(header: bytes | None) -> str:
        """The token of an ``Authorization: Bearer`` header; AuthError if absent or odd."""
        if not header or len(header) > _MAX_TOKEN:
            raise AuthError(_BLAND)
        scheme, _, value = header.partition(b" ")
        if scheme.lower() != b"bearer" or not value or b" " in value.strip():
            raise AuthError(_BLAND)
        try:
            return value.strip().decode("ascii")
        except UnicodeDecodeError:
            raise AuthError(_BLAND) from None

    async def authenticate(self, token: str) -> tuple[Caller, bytes]:
        """The caller and the cache key (SHA-256 of the token)."""
        key = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        hit = self._callers.get(key)
        if hit is not None and hit[0] > now:
            return hit[1], key
        if token.startswith("bst_"):
            identity = await asyncio.to_thread(self._ws.authenticate, token)
            caller = Caller(identity.principal, (identity.role,), "token", identity)
        elif self._jwt is not None and token.count(".") == 2:
            caller = self._jwt.verify(token)
        else:
            raise AuthError(_BLAND)
        self._remember(self._callers, key, (now + self._ttl, caller))
        return caller, key

    async def authorize(
        self,
        caller: Caller,
        key: bytes,
        permission: str,
        resource_type: str | None = None,
        resource: str | None = None,
    ) -> None:
        """AccessDenied unless ``caller`` may do ``permission`` (on the resource)."""
        cache_key = (key, permission, resource_type or "", resource or "")
        now = self._clock()
        hit = self._decisions.get(cache_key)
        if hit is not None and hit[0] > now:
            allowed = hit[1]
        else:
            allowed = await asyncio.to_thread(
                self._decide, caller, permission, resource_type, resource
            )
            self._remember(self._decisions, cache_key, (now + self._ttl, allowed))
        if not allowed:
            raise AccessDenied(f"{caller.principal} may not {permission}")

    def _decide(
        self, caller: Caller, permission: str, resource_type: str | None, resource: str | None
    ) -> bool:
        if caller.identity is not None:
            try:  # the CLI's and the API's decision; the request's own entry audits a denial
                self._ws.authorize(
                    permission,
                    resource_type=resource_type,
                    resource=resource,
                    identity=caller.identity,
                    audit=False,
                )
            except AccessDenied:
                return False
            return True
        held: set[str] = set()
        for role in caller.roles:
            try:
                held |= self._permissions(role)
            except ConfigError:  # not a Bastion role: grants nothing
                continue
        if "*" in held:
            return True
        if permission not in held:
            return False
        if resource_type is None:  # a permission on no resource (audit:read): the role's
            return True
        # a JWT's deployments claim is a grant on ("deployment", each name it lists)
        return any(covers("deployment", d, resource_type, resource) for d in caller.deployments)

    def _permissions(self, role: str) -> frozenset[str]:
        now = self._clock()
        hit = self._perms.get(role)
        if hit is not None and hit[0] > now:
            return hit[1]
        perms = self._ws.access.permissions(role)
        self._perms[role] = (now + self._ttl, perms)
        return perms

    @staticmethod
    def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
        if len(cache) >= _MAX_CACHE:
            cache.clear()  # crude but bounded: a flood of distinct tokens cannot grow it
        cache[key] = value
