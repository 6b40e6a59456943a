"""The workspace: one home, opened as one authenticated principal, and its services.

:meth:`Workspace.init` makes a home and returns the ``admin`` principal's token, shown once;
:meth:`Workspace.open` opens one. Both need the passphrase (argument, ``BASTION_MASTER_KEY``
or a prompt in the CLI): there is no default. The workspace opens the keys, store, database
and audit log, upgrades a home made by an earlier version at its first open, and keeps the
access state sealed and checked.

Its jobs live beside it: :mod:`bastion._home` (the home's files: layout, marker, creating
and reading one, the environment variables), :mod:`bastion._sealing` (row MACs and the
access state sealed, an older home upgraded), :mod:`bastion._operations` (the authorized,
audited operations), :mod:`bastion._home_verify` (``verify``'s checks) and
:mod:`bastion._rotation` (``rotate_keys``). This module is the public entry, and every
name in ``__all__`` is importable from here.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion._home import (
    ENV_DATABASE,
    create_home,
    default_home,
    open_home,
    passphrase_from_env,
    token_from_env,
)
from bastion._home_verify import Problem, WorkspaceVerifyReport, verify_home
from bastion._operations import Operations
from bastion._rotation import RotationReport, rotate
from bastion._sealing import access_refusal, seal_access_state, seal_rows, upgrade
from bastion.errors import ConfigError
from bastion.security.access import AccessControl, Identity, IssuedToken
from bastion.security.access_state import STATE_FILE, AccessState
from bastion.security.anchor import ANCHOR_FILE
from bastion.security.audit import AuditLog
from bastion.security.audit.durability import DURABILITIES as AUDIT_DURABILITIES
from bastion.security.blocks import Blocks, BlockStore
from bastion.security.keys import DEFAULT_SCRYPT_LOG_N, LocalKeyring
from bastion.security.recipes import localhost_certificate
from bastion.security.rows import RowMac
from bastion.security.scope import covers
from bastion.security.signing import (
    StatementStore,
    make_statement,
    sign_statement,
    trusted_keys,
)
from bastion.store.artifacts import ArtifactStore
from bastion.store.db import ensure_schema, make_engine

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from bastion.pipeline.evaluation import Evaluations
    from bastion.pipeline.registry import ModelRegistry
    from bastion.pipeline.runs import Runs

__all__ = [
    "AUDIT_DURABILITIES",
    "Identity",
    "Problem",
    "RotationReport",
    "Workspace",
    "WorkspaceVerifyReport",
    "check_override_reason",
    "covers",
    "default_home",
    "localhost_certificate",
    "opened",
    "parse_model_ref",
    "passphrase_from_env",
    "token_from_env",
]

Progress = Callable[[str, int, int], None]
"""Called as ``progress(step, done, total)`` during long work."""


def parse_model_ref(ref: str) -> tuple[str, int | None]:
    """``NAME[:VERSION]`` → (name, version or None); ConfigError when malformed."""
    from bastion.pipeline.registry import parse_ref

    return parse_ref(ref)


def check_override_reason(reason: str | None) -> str:
    """An approver's reason to pass failed gates: required, at least 10 characters;
    ConfigError otherwise (so the CLI refuses it before asking for any secret)."""
    from bastion.pipeline.verdict import check_reason

    return check_reason(reason)


class Workspace(Operations):
    """One home, opened as one authenticated principal. Use :meth:`init` or :meth:`open`
    (passphrase *and* token), then :meth:`close`.

    Public API: ``home``, ``identity`` (who this workspace acts as), ``models`` (the model
    registry: ``list``, ``verify`` and ``load`` check ``model:read``), ``blocks`` (the
    server's blocks: ``list`` and ``lift`` check ``serve:admin``), :meth:`authorize`,
    :meth:`authenticate`, :meth:`verify`, :meth:`rotate_keys`, :meth:`attest`, the
    operations of :class:`bastion._operations.Operations` (tokens, principals, artifacts,
    the audit log, keys, statements, models) and :meth:`close`. Each one checks its
    permission through :meth:`authorize` (refusals audited) and acts as ``identity``.

    ``store``, ``audit``, ``access``, ``keyring``, ``engine``, ``statements``, ``rows`` and
    ``block_store`` are the library's internal services: they check no permission and take
    the actor they are given. Stages, the runner and the server use them; callers of the API
    should not.
    """

    def __init__(self, home: Path, keyring: LocalKeyring, database_url: str | URL) -> None:
        self.home = home
        self.keyring = keyring
        self.engine = make_engine(database_url)
        ensure_schema(self.engine)
        self.audit = AuditLog(self.engine, keyring, anchor=home / ANCHOR_FILE)
        self.store = ArtifactStore(home, keyring, self.engine, self.audit)
        self.rows = RowMac.of(keyring)  # seals and checks metadata rows (security.rows)
        self.access_state = AccessState.of(home / STATE_FILE, keyring, self.rows)
        self.access = AccessControl(
            self.engine, self.audit, rows=self.rows, state=self.access_state
        )
        self.statements = StatementStore(self.engine)
        self.block_store = BlockStore(self.engine, self.audit, self.rows)  # security.blocks
        self._identity: Identity | None = None  # set by open/init once a token proves it
        self._refused: str | None = None  # why the access state refuses all but verify
        self._watching: threading.Event | None = None
        upgrade(self)  # a home made by an earlier version, once (bastion._sealing)

    def _check_access_state(self) -> None:
        """Compare the access rows with their sealed state; on a mismatch refuse every
        operation but ``verify`` from now on, audited once as ``access.refused``."""
        found = access_refusal(self)
        if found is not None and self._refused is None:
            self._refused, rows = found
            self.audit.record(
                "bastion", "access.refused", f"file:{STATE_FILE}", "denied", {"rows": rows}
            )

    def watch_access_state(self, interval: float = 5.0) -> None:
        """Re-check the access state every ``interval`` seconds on a daemon thread (the
        server's: a long-lived workspace), until :meth:`close`."""
        if self._watching is not None:
            return
        stop = self._watching = threading.Event()

        def watch() -> None:
            while not stop.wait(interval):
                with contextlib.suppress(Exception):  # a database hiccup is not a verdict
                    self._check_access_state()

        threading.Thread(target=watch, name="bastion-access-state", daemon=True).start()

    # -- life cycle -------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        home: Path | None = None,
        passphrase: str | None = None,
        *,
        database_url: str | None = None,
        admin: str = "admin",
        scrypt_log_n: int = DEFAULT_SCRYPT_LOG_N,
        token_ttl: timedelta = timedelta(days=90),
    ) -> tuple[Workspace, IssuedToken]:
        """Create a home with its keyring, database and an ``admin`` principal.

        Returns the workspace, authenticated as the admin, and the admin's token, which is
        shown once and stored only as a hash.
        """
        home = Path(home) if home is not None else default_home()
        passphrase = passphrase if passphrase is not None else passphrase_from_env()
        database_url = database_url or os.environ.get(ENV_DATABASE)
        keyring, url, database = create_home(
            home, passphrase, database_url, scrypt_log_n=scrypt_log_n
        )
        ws = cls(home, keyring, url)
        try:
            ws.audit.init_anchor()
            ws.audit.record(
                admin,
                "home.init",
                f"home:{home.resolve()}",
                "ok",
                {"database": database, "python": platform.python_version()},
            )
            seal_rows(ws, admin)  # the role permissions migration 0001 seeded
            seal_access_state(ws, admin)  # ... and them as the first access state
            ws.access.add_principal(admin, "person", actor=admin)
            ws.access.grant(admin, "admin", actor=admin)
            token = ws.access.create_token(
                admin, "admin", expires_in=token_ttl, description="created by init", actor=admin
            )
            ws._identity = ws.access.authenticate(token.token)
            ws.audit.checkpoint()
        except BaseException:
            ws.close()
            raise
        return ws, token

    @classmethod
    def open(
        cls,
        home: Path | None = None,
        passphrase: str | None = None,
        *,
        token: str | None = None,
        database_url: str | None = None,
    ) -> Workspace:
        """Open an existing home as the principal ``token`` proves.

        Both are required: the passphrase (argument or ``BASTION_MASTER_KEY``) unlocks the
        keys, the token (argument, ``BASTION_TOKEN`` or the file ``BASTION_TOKEN_FILE``)
        says who acts; ``ws.identity`` is that principal, and every operation checks its
        permission and records it as the actor. No token, or one that does not
        authenticate, is an AuthError (bland for a wrong one), as is a wrong passphrase.
        """
        home = Path(home) if home is not None else default_home()
        token = token if token is not None else token_from_env()
        keyring, url = open_home(home, passphrase, database_url)
        ws = cls(home, keyring, url)
        try:
            ws._identity = ws.authenticate(token)
            ws._check_access_state()
        except BaseException:
            ws.close()
            raise
        return ws

    def close(self) -> None:
        """Flush the audit log and release the database."""
        if self._watching is not None:
            self._watching.set()
        self.audit.close()
        self.engine.dispose()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @functools.cached_property
    def blocks(self) -> Blocks:
        """Blocks the server placed (extraction): ``list`` and ``lift``, ``serve:admin``."""
        return Blocks(self.block_store, self.authorize)

    @functools.cached_property
    def models(self) -> ModelRegistry:
        """Registered models; loading one verifies its signature and provenance first."""
        from bastion.pipeline.registry import ModelRegistry

        return ModelRegistry(self)

    @functools.cached_property
    def evaluations(self) -> Evaluations:
        """Signed evaluations of registered models: ``run`` (``bastion evaluate``),
        ``show``, ``approve`` (an approver's override) and the server's ``require_passed``."""
        from bastion.pipeline.evaluation import Evaluations

        return Evaluations(self)

    @functools.cached_property
    def runs(self) -> Runs:
        """Pipeline runs, newest first: ``list`` and ``show`` (``model:read``), with the
        paths of each run's report and model card."""
        from bastion.pipeline.runs import Runs

        return Runs(self)

    # -- keys -------------------------------------------------------------------------

    def rotate_keys(
        self,
        *,
        signing: bool = False,
        pseudonym: bool = False,
        progress: Progress | None = None,
    ) -> RotationReport:
        """Make a new KEK, re-wrap every blob's data key under it, retire unused KEKs.

        Crash-safe at every step; rerunning after a crash finishes the job
        (:mod:`bastion._rotation`).

        ``signing`` also replaces the signing key (old ones still verify). ``pseudonym``
        also replaces the pseudonym key and erases the old one: pseudonyms made from then
        on no longer match earlier ones, so joins with older outputs stop working.

        Needs ``keys:rotate``; recorded as the workspace's principal.
        """
        actor = self.authorize("keys:rotate").principal
        return rotate(self, actor, signing=signing, pseudonym=pseudonym, progress=progress)

    # -- provenance -------------------------------------------------------------------

    def attest(
        self,
        subjects: Sequence[tuple[str, str]],
        predicate_type: str,
        predicate: Mapping[str, Any],
        *,
        actor: str | None = None,
        approval: str | None = None,
    ) -> str:
        """Sign an in-toto statement about artifacts ``(name, sha256)`` and keep it.

        Every subject must already be in the store. Returns the statement's id. Needs
        ``artifact:write`` — or, for an approver's override of a failed evaluation
        (``approval``: the model's name), ``model:approve`` on that model; signed and
        recorded as the workspace's principal (an ``actor`` that names anyone else is
        refused, and the refusal audited).
        """
        actor = self._actor(actor)
        if approval is None:
            self.authorize("artifact:write")
        else:
            self.authorize("model:approve", resource_type="model", resource=approval)
        for name, digest in subjects:
            if not self.store.exists(digest):
                raise ConfigError(f"subject {name}: artifact {digest} is not in the store")
        statement = make_statement(subjects, predicate_type, predicate)
        envelope = sign_statement(self.keyring, statement)
        self.audit.record(
            actor,
            "statement.sign",
            f"predicate:{predicate_type}",
            "ok",
            {"subjects": [d for _n, d in subjects]},
        )
        return self.statements.add(envelope, trusted=trusted_keys(self.keyring))

    # -- verification -----------------------------------------------------------------

    def verify(
        self, *, checkpoint: Path | None = None, progress: Progress | None = None
    ) -> WorkspaceVerifyReport:
        """Re-check every artifact, signed statement, registered model (its place in the
        signed, audited version history, signature, contract and provenance chain), the
        audit log and the home's file modes (files 0600, folders 0700).

        Never raises for a failed check: each failure is a :class:`Problem` in the report,
        a damaged row is one problem, and a check that breaks on something unexpected is
        one problem too while every other check still runs. The checks are
        :mod:`bastion._home_verify`'s (to add one, see there).

        Needs ``verify:run``; the run is audited as ``verify.run``.
        """
        self.authorize("verify:run")
        report = verify_home(self, checkpoint=checkpoint, progress=progress)
        self._record_verify(report)
        return report


@contextlib.contextmanager
def opened(
    home: Path | None = None, passphrase: str | None = None, *, token: str | None = None
) -> Iterator[Workspace]:
    """``with opened(home) as ws:`` — open (passphrase and token, as :meth:`Workspace.open`),
    then always close (flushing the audit log)."""
    ws = Workspace.open(home, passphrase, token=token)
    try:
        yield ws
    finally:
        ws.close()
