"""The workspace's public operations: each authorizes, then acts, then audits.

Mixed into :class:`bastion.workspace.Workspace`. Every method here checks its permission
through :meth:`Workspace.authorize` (the one authorize path: a refusal is audited with the
permission as its action and the outcome ``denied``), acts as the workspace's authenticated
principal (``ws.identity``; never a name the caller passes) and records what it did. The
CLI calls one of these per command and writes no audit entry of its own.

The permission names are the CLI's: ``token:create``, ``token:read``, ``token:revoke``,
``principal:manage``, ``artifact:read``, ``artifact:write``, ``audit:read``,
``audit:verify``, ``audit:checkpoint``, ``keys:read``, ``keys:rotate``, ``model:read``,
``verify:run``, ``pipeline:run``.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.errors import AccessDenied, AuditError, AuthError, ForgedCredential, IntegrityError
from bastion.security.access_state import STATE_FILE

if TYPE_CHECKING:
    from bastion.pipeline.registry import ModelRegistry, VerifiedModel
    from bastion.security.access import AccessControl, Grant, Identity, IssuedToken, Principal
    from bastion.security.audit import AuditLog, Checkpoint
    from bastion.security.audit import VerifyReport as AuditReport
    from bastion.security.keys import KeyInfo, LocalKeyring
    from bastion.security.signing import StatementStore
    from bastion.store.artifacts import ArtifactRef, ArtifactStore

__all__ = ["ARTIFACT_PUT_PREDICATE", "Operations"]

ARTIFACT_PUT_PREDICATE = "https://bastion.dev/attestations/artifact-put/v1"


class Operations:
    """Authorized, audited operations on a workspace (see the module docstring)."""

    _refused: str | None = None  # set by Workspace while the access state refuses

    if TYPE_CHECKING:  # set by Workspace
        access: AccessControl
        audit: AuditLog
        keyring: LocalKeyring
        store: ArtifactStore
        statements: StatementStore
        _identity: Identity | None

        @property
        def models(self) -> ModelRegistry: ...

        def attest(
            self,
            subjects: list[tuple[str, str]],
            predicate_type: str,
            predicate: dict[str, Any],
            *,
            actor: str | None = None,
            approval: str | None = None,
        ) -> str: ...

    # -- who --------------------------------------------------------------------------

    @property
    def identity(self) -> Identity:
        """Who this workspace acts as: the principal its token proved at open."""
        if self._identity is None:
            raise AuthError("this workspace is not authenticated: open it with a token")
        return self._identity

    def authenticate(self, token: str) -> Identity:
        """The identity ``token`` proves, or one bland AuthError.

        The one authentication of Bastion: :meth:`Workspace.open` (CLI and Python API) and
        the server's :class:`~bastion.serving.auth.Authenticator` both call it.
        """
        if self._refused is not None:  # the access rows differ from their sealed state
            raise ForgedCredential(self._refused, STATE_FILE, "")
        return self.access.authenticate(token)

    def authorize(
        self,
        permission: str,
        *,
        resource_type: str | None = None,
        resource: str | None = None,
        identity: Identity | None = None,
        audit: bool = True,
    ) -> Identity:
        """AccessDenied unless the workspace's identity (or ``identity``) may do
        ``permission`` on the resource; return that identity.

        The one authorize path of the CLI, the Python API and the server. A refusal is
        audited (actor: the principal; action: the permission; outcome ``denied``) unless
        ``audit`` is false, which only the server passes: it writes one entry per request,
        denials included.
        """
        who = identity if identity is not None else self.identity
        # while the access rows differ from their sealed state, only verify may run
        by_state = self._refused is not None and permission != "verify:run"
        try:
            if by_state:
                raise ForgedCredential(self._refused or "", STATE_FILE, "")
            self.access.authorize(who, permission, resource_type=resource_type, resource=resource)
        except AccessDenied:
            if audit:
                details = {"role": who.role, "token": who.token_id}
                self.audit.record(
                    who.principal,
                    permission,
                    f"{resource_type or '*'}:{resource or '*'}",
                    "denied",
                    {**details, "reason": "access state"} if by_state else details,
                )
            raise
        return who

    def _actor(self, actor: str | None) -> str:
        """The authenticated principal; a different ``actor`` is refused and audited."""
        who = self.identity
        if actor is None or actor == who.principal:
            return who.principal
        self.audit.record(
            who.principal,
            "actor.refused",
            f"principal:{who.principal}",
            "denied",
            {"claimed": actor[:128], "token": who.token_id},
        )
        raise AccessDenied(
            f"actor: only the authenticated principal {who.principal!r} can act here,"
            f" not {actor[:128]!r}"
        )

    # -- principals and tokens --------------------------------------------------------

    def create_token(
        self,
        role: str,
        *,
        principal: str | None = None,
        resource_type: str = "*",
        resource: str = "*",
        expires_in: timedelta = timedelta(days=90),
        description: str = "",
    ) -> IssuedToken:
        """Issue a token (shown once). Without ``principal``, a new service principal
        ``svc-ROLE-XXXXXXXX`` is made and granted ``role`` on the scope first."""
        who = self.authorize("token:create").principal
        owner = principal
        if owner is None:
            owner = f"svc-{role}-{secrets.token_hex(4)}"
            self.access.add_principal(owner, "service", actor=who)
            self.access.grant(
                owner, role, resource_type=resource_type, resource=resource, actor=who
            )
        return self.access.create_token(
            owner,
            role,
            resource_type=resource_type,
            resource=resource,
            expires_in=expires_in,
            description=description,
            actor=who,
        )

    def list_tokens(self, principal: str | None = None) -> list[Any]:
        """Every token (or one principal's): never a secret or its hash."""
        self.authorize("token:read")
        return self.access.list_tokens(principal)

    def revoke_token(self, token_id: str) -> None:
        """Revoke a token at once."""
        self.access.revoke_token(token_id, actor=self.authorize("token:revoke").principal)

    def add_principal(self, name: str, kind: str = "person") -> None:
        """Register a person or a service."""
        self.access.add_principal(name, kind, actor=self.authorize("principal:manage").principal)

    def grant(
        self, principal: str, role: str, *, resource_type: str = "*", resource: str = "*"
    ) -> None:
        """Give ``principal`` the ``role`` on a scope."""
        who = self.authorize("principal:manage").principal
        self.access.grant(
            principal, role, resource_type=resource_type, resource=resource, actor=who
        )

    def disable_principal(self, name: str) -> None:
        """Disable a principal: every one of its tokens stops working."""
        self.access.disable_principal(name, actor=self.authorize("principal:manage").principal)

    def principals(self) -> tuple[list[Principal], list[Grant]]:
        """Every principal and every grant."""
        self.authorize("principal:manage")
        return self.access.list_principals(), self.access.grants()

    # -- artifacts --------------------------------------------------------------------

    def put_artifact(
        self, path: Path, *, media_type: str = "application/octet-stream", name: str | None = None
    ) -> tuple[ArtifactRef, str]:
        """Encrypt a file into the store and sign a statement about it; (ref, statement id)."""
        who = self.authorize("artifact:write").principal
        ref = self.store.put(path, actor=who, media_type=media_type, name=name or path.name)
        statement = self.attest(
            [(ref.name or ref.digest, ref.digest)],
            ARTIFACT_PUT_PREDICATE,
            {
                "actor": who,
                "source": str(path),
                "media_type": media_type,
                "size": ref.size,
                "stored": ref.created,
            },
        )
        return ref, statement

    def get_artifact(self, digest: str, output: Path) -> None:
        """Decrypt and verify an artifact into ``output`` (written only if it verifies)."""
        who = self.authorize("artifact:read").principal
        self.store.export(digest, output)
        self.audit.record(who, "artifact.get", f"artifact:{digest}", "ok", {"output": str(output)})

    def list_artifacts(self) -> list[ArtifactRef]:
        """Every recorded artifact, oldest first."""
        self.authorize("artifact:read")
        return self.store.list()

    # -- the audit log ----------------------------------------------------------------

    def audit_entries(
        self,
        *,
        start: int | None = None,
        limit: int = 50,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        newest_first: bool = False,
    ) -> list[Any]:
        """A page of audit entries (``actor`` filters; it acts as no one), ``since <= ts <
        until``; oldest first from ``seq >= start``, or newest first from ``seq <= start``
        (the end of the log by default), filtered in the database."""
        self.authorize("audit:read")
        return self.audit.entries(
            start=start,
            limit=limit,
            actor=actor,
            action=action,
            since=since,
            until=until,
            newest_first=newest_first,
        )

    def verify_audit(self, *, checkpoint: Path | None = None) -> AuditReport:
        """The audit log's chain, checkpoints and anchor; AuditChainError if any fail."""
        self.authorize("audit:verify")
        return self.audit.verify(checkpoint=checkpoint)

    def checkpoint(self, *, export: Path | None = None) -> Checkpoint:
        """Sign a checkpoint of the audit log now (sealed as the anchor); optionally
        write it to ``export`` to keep elsewhere."""
        self.authorize("audit:checkpoint")
        if export is not None:
            return self.audit.export_checkpoint(export)
        return self.audit.checkpoint()

    # -- keys and statements ----------------------------------------------------------

    def list_keys(self) -> tuple[list[KeyInfo], dict[str, int]]:
        """The keyring's keys (never material) and how many blobs each KEK wraps."""
        self.authorize("keys:read")
        return self.keyring.keys(), self.store.key_ids_in_use()

    def public_keys(self) -> tuple[dict[str, str], dict[str, str], list[dict[str, Any]]]:
        """The signing keys' public halves: (key id → state, key id → PEM, JWKs)."""
        self.authorize("keys:read")
        states: dict[str, str] = {k.id: k.state for k in self.keyring.keys() if k.kind == "signing"}
        return states, self.keyring.public_keys_pem(), self.keyring.public_keys_jwk()["keys"]

    def list_statements(self) -> list[tuple[str, dict[str, Any] | IntegrityError]]:
        """Every stored ``(id, envelope)``; a damaged row comes as ``(id, IntegrityError)``."""
        self.authorize("model:read")
        return list(self.statements.all())

    def get_statement(self, statement_id: str) -> dict[str, Any]:
        """One stored DSSE envelope, as stored."""
        self.authorize("model:read")
        return self.statements.get(statement_id)

    # -- models -----------------------------------------------------------------------

    def show_model(self, ref: str) -> VerifiedModel:
        """A model after verifying its signature and provenance; audited ``model.show``."""
        from bastion.pipeline.registry import parse_ref

        name, _ = parse_ref(ref)
        who = self.authorize("model:read", resource_type="model", resource=name).principal
        verified = self.models.verify_record(self.models.get(ref))
        self.audit.record(who, "model.show", f"model:{verified.record.ref}", "ok", {})
        return verified

    def verify_model(self, ref: str) -> VerifiedModel:
        """Verify one model's signature, artifacts and provenance chain; audited
        ``verify.model`` (``failed`` with the reason before the IntegrityError is raised)."""
        who = self.authorize("verify:run").principal
        try:
            verified = self.models.verify_record(self.models.get(ref))
        except IntegrityError as exc:
            self.audit.record(
                who, "verify.model", f"model:{ref}", "failed", {"error": str(exc)[:500]}
            )
            raise
        self.audit.record(who, "verify.model", f"model:{verified.record.ref}", "ok", {})
        return verified

    def _record_verify(self, report: Any) -> None:
        """Audit a finished ``verify`` (``verify.run``, ok or failed)."""
        try:
            self.audit.record(
                self.identity.principal,
                "verify.run",
                "home",
                "ok" if report.ok else "failed",
                {
                    "artifacts": report.artifacts,
                    "statements": report.statements,
                    "models": report.models,
                    "audit_entries": report.audit_entries,
                    "problems": len(report.problems),
                },
            )
        except AuditError:
            if report.ok:
                raise  # a log that failed verification refuses appends: the report says why
