# Over 400 lines, because the home's one entry point (open, init, authorize, verify).
"""The home folder: one place that opens the keys, store, database and audit log.

A home (``BASTION_HOME``, default ``./.bastion``, mode 0700) holds::

    home.json       format marker and which database the home uses (never a password)
    keyring.json    the keyring, sealed under the passphrase (see security.keys)
    audit-anchor.json  the audit log's newest tree head, signed (see security.anchor)
    access-state.json  the current access-control rows, sealed (see security.access_state)
    bastion.db      the metadata database, unless BASTION_DATABASE_URL names PostgreSQL
    objects/        encrypted, content-addressed blobs (see docs/formats/artifact.md)
    tmp/            half-written blobs; never read
    lock            held while the keys are rotated

:meth:`Workspace.init` makes one and returns the ``admin`` principal's token, shown once;
:meth:`Workspace.open` opens one. Both need the passphrase (argument, ``BASTION_MASTER_KEY``
or a prompt in the CLI): there is no default.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion._fs import atomic_write, file_lock, loose_modes
from bastion._operations import Operations
from bastion.errors import (
    AuditChainError,
    ConfigError,
    Error,
    IntegrityError,
    MissingCredential,
    StateError,
)
from bastion.security.access import AccessControl, Identity, IssuedToken
from bastion.security.access_state import STATE_FILE, AccessState, refusal
from bastion.security.anchor import ANCHOR_FILE
from bastion.security.audit import AuditLog, adopt_anchor
from bastion.security.blocks import Blocks, BlockStore
from bastion.security.keys import DEFAULT_SCRYPT_LOG_N, LocalKeyring
from bastion.security.recipes import localhost_certificate
from bastion.security.rows import RowMac, scan, seal_missing
from bastion.security.scope import covers
from bastion.security.signing import (
    StatementStore,
    make_statement,
    sign_statement,
    trusted_keys,
    verify_statement,
)
from bastion.store.artifacts import ArtifactStore
from bastion.store.db import ensure_schema, make_engine, migrate, sqlite_url

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from bastion.pipeline.evaluation import Evaluations
    from bastion.pipeline.registry import ModelRegistry
    from bastion.pipeline.runs import Runs

__all__ = [
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

_HOME_FORMAT = "bastion-home"
_HOME_VERSION = 1
ENV_HOME = "BASTION_HOME"
ENV_PASSPHRASE = "BASTION_MASTER_KEY"  # noqa: S105 - the name of the variable, not a secret
ENV_TOKEN = "BASTION_TOKEN"  # noqa: S105 - the name of the variable, not a secret
ENV_TOKEN_FILE = "BASTION_TOKEN_FILE"  # noqa: S105 - the name of the variable, not a secret
ENV_DATABASE = "BASTION_DATABASE_URL"

Progress = Callable[[str, int, int], None]
"""Called as ``progress(step, done, total)`` during long work."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing that failed verification."""

    kind: str  # artifact | statement | model | audit | file | row
    subject: str
    message: str


@dataclass(slots=True)
class WorkspaceVerifyReport:
    """What ``bastion verify`` checked and what it found."""

    artifacts: int = 0
    statements: int = 0
    models: int = 0
    audit_entries: int = 0
    audit_checkpoints: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(slots=True)
class _VerifyState:
    """What one ``verify`` run's checks hand on to the next."""

    checkpoint: Path | None
    step: Progress
    known: set[str] | None = None  # artifact digests the store records
    good: set[str] = field(default_factory=set)  # blobs checked: not decrypted again


def _why(exc: BaseException) -> str:
    """A problem's message: Bastion's own errors as they are, anything else with its type."""
    return str(exc) if isinstance(exc, Error) else f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True, slots=True)
class RotationReport:
    """What ``bastion keys rotate`` did."""

    new_kek: str
    rewrapped: int
    retired: list[str]
    new_signing_key: str | None
    new_pseudonym_key: str | None = None


def parse_model_ref(ref: str) -> tuple[str, int | None]:
    """``NAME[:VERSION]`` → (name, version or None); ConfigError when malformed."""
    from bastion.pipeline.registry import parse_ref

    return parse_ref(ref)


def check_override_reason(reason: str | None) -> str:
    """An approver's reason to pass failed gates: required, at least 10 characters;
    ConfigError otherwise (so the CLI refuses it before asking for any secret)."""
    from bastion.pipeline.verdict import check_reason

    return check_reason(reason)


def default_home() -> Path:
    return Path(os.environ.get(ENV_HOME, ".bastion"))


def passphrase_from_env() -> str:
    """The passphrase from ``BASTION_MASTER_KEY``; a StateError if it is not set."""
    value = os.environ.get(ENV_PASSPHRASE)
    if not value:
        raise StateError(f"no passphrase: set {ENV_PASSPHRASE} or run interactively")
    return value


def token_from_env() -> str:
    """The caller's API token, from ``BASTION_TOKEN`` or the file ``BASTION_TOKEN_FILE``;
    a MissingCredential (an AuthError, exit 2: usage) if neither gives one. The CLI and
    the Python API both read it here."""
    value = os.environ.get(ENV_TOKEN)
    path = os.environ.get(ENV_TOKEN_FILE)
    if not value and path:
        try:
            value = Path(path).read_text().strip()
        except OSError:
            raise MissingCredential(f"{ENV_TOKEN_FILE}: cannot read {path}") from None
    if not value:
        raise MissingCredential(
            f"no token: pass token= or set {ENV_TOKEN} (`bastion init` printed the admin's);"
            " the passphrase opens the keys, the token says who you are"
        )
    return value


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
        # Homes made by an earlier version, upgraded once at their first open (trust on
        # first use, audited): an anchor for the audit log (security.anchor), row MACs
        # (security.rows), then the access state (security.access_state).
        if not keyring.audit_anchored:
            adopt_anchor(self.engine, keyring, home / ANCHOR_FILE, actor="bastion")
            keyring.mark_audit_anchored()
        if not keyring.rows_sealed:
            self._seal_rows("bastion")
            keyring.mark_rows_sealed()
        if not keyring.access_sealed:
            self._seal_access_state("bastion")
            keyring.mark_access_sealed()

    def _seal_rows(self, actor: str) -> dict[str, int]:
        """Give every metadata row without a MAC its MAC, audited as ``rows.sealed``.

        Only for rows this version did not write itself: the seeded role permissions at
        init, and every row of a home made before row MACs, at its first open.
        """
        with self.engine.begin() as conn:
            counts = seal_missing(conn, self.rows)
            if counts:
                self.audit.record_in(conn, actor, "rows.sealed", "database", "ok", counts)
        return counts

    def _seal_access_state(self, actor: str) -> None:
        """Seal the access-control rows as they are (a new home, or the first open of one
        made before the access state), audited as ``access.sealed`` with the counts."""
        counts = self.access_state.adopt(self.engine)
        self.audit.record(actor, "access.sealed", f"file:{STATE_FILE}", "ok", counts)

    def _check_access_state(self) -> None:
        """Compare the access rows with their sealed state; on a mismatch refuse every
        operation but ``verify`` from now on, audited once as ``access.refused``."""
        try:
            problems = self.access_state.check(self.engine)
            why = refusal(problems) if problems else None
            rows = [p.subject for p in problems[:20]]
        except IntegrityError as exc:
            why, rows = f"refused: {exc}; only verify runs until it is restored", [STATE_FILE]
        if why is not None and self._refused is None:
            self._refused = why
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
        if home.exists() and any(home.iterdir()):
            raise ConfigError(f"{home}: already exists and is not empty; choose another home")
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(home, 0o700)
        for sub in ("objects", "tmp"):
            (home / sub).mkdir(mode=0o700, exist_ok=True)
        keyring = LocalKeyring.create(home / "keyring.json", passphrase, scrypt_log_n=scrypt_log_n)
        url = database_url or sqlite_url(home.resolve() / "bastion.db")
        engine = make_engine(url)
        try:
            migrate(engine)
        finally:
            engine.dispose()
        marker = {
            "format": _HOME_FORMAT,
            "version": _HOME_VERSION,
            "database": "sqlite" if database_url is None else "external",
        }
        atomic_write(home / "home.json", json.dumps(marker, indent=1).encode() + b"\n")
        ws = cls(home, keyring, url)
        try:
            ws.audit.init_anchor()
            ws.audit.record(
                admin,
                "home.init",
                f"home:{home.resolve()}",
                "ok",
                {"database": marker["database"], "python": platform.python_version()},
            )
            ws._seal_rows(admin)  # the role permissions migration 0001 seeded
            ws._seal_access_state(admin)  # ... and them as the first access state
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
        try:
            marker = json.loads((home / "home.json").read_text())
        except FileNotFoundError:
            raise StateError(f"{home}: not a Bastion home (run `bastion init`)") from None
        except ValueError:
            raise IntegrityError(f"{home / 'home.json'}: not valid JSON") from None
        if marker.get("format") != _HOME_FORMAT or marker.get("version") != _HOME_VERSION:
            raise StateError(f"{home}: written by an incompatible Bastion version")
        passphrase = passphrase if passphrase is not None else passphrase_from_env()
        keyring = LocalKeyring.open(home / "keyring.json", passphrase)
        if marker.get("database") == "external":
            external = database_url or os.environ.get(ENV_DATABASE)
            if not external:
                raise StateError(f"{home}: this home's database is external; set {ENV_DATABASE}")
            ws = cls(home, keyring, external)
        else:
            ws = cls(home, keyring, sqlite_url(home.resolve() / "bastion.db"))
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

        Crash-safe at every step: the keyring is replaced atomically and keeps every KEK
        that any blob still names; each blob's key slot is rewritten with an atomic
        rename; a KEK is retired (its material erased) only after the blob headers show
        that nothing uses it. Rerunning after a crash finishes the job.

        ``signing`` also replaces the signing key (old ones still verify). ``pseudonym``
        also replaces the pseudonym key and erases the old one: pseudonyms made from then
        on no longer match earlier ones, so joins with older outputs stop working.

        Needs ``keys:rotate``; recorded as the workspace's principal.
        """
        actor = self.authorize("keys:rotate").principal
        step = progress or (lambda _s, _d, _t: None)
        with file_lock(self.home / "lock"):
            self.audit.record(
                actor,
                "keys.rotate",
                "keyring",
                "started",
                {"signing": signing, "pseudonym": pseudonym},
            )
            new_kek = self.keyring.add_kek()
            step("kek-created", 0, 0)
            new_sig = self.keyring.add_signing_key() if signing else None
            if new_sig:
                step("signing-key-created", 0, 0)
            new_psk = self.keyring.add_pseudonym_key() if pseudonym else None
            if new_psk:
                step("pseudonym-key-created", 0, 0)
            digests = sorted(self.store.iter_digests())
            rewrapped = 0
            for done, digest in enumerate(digests, 1):
                if self.store.rewrap(digest, new_kek):
                    rewrapped += 1
                step("rewrapped", done, len(digests))
            in_use = set(self.store.key_ids_in_use())
            retired = []
            for info in self.keyring.keys():
                if info.kind == "kek" and info.state == "decrypt-only" and info.id not in in_use:
                    self.keyring.retire_kek(info.id, in_use=in_use)
                    retired.append(info.id)
                    step("retired", len(retired), 0)
            self.audit.record(
                actor,
                "keys.rotate",
                "keyring",
                "ok",
                {
                    "new_kek": new_kek,
                    "rewrapped": rewrapped,
                    "retired": retired,
                    "new_signing_key": new_sig,
                    "new_pseudonym_key": new_psk,
                },
            )
            if new_sig:
                self.audit.checkpoint()  # the first checkpoint under the new signing key
        return RotationReport(new_kek, rewrapped, retired, new_sig, new_psk)

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
        one problem too while every other check still runs. To add a check, add a
        ``_check_...(report, state)`` method and one line to :meth:`_checks`.

        Needs ``verify:run``; the run is audited as ``verify.run``.
        """
        self.authorize("verify:run")
        report = WorkspaceVerifyReport()
        state = _VerifyState(checkpoint, progress or (lambda _s, _d, _t: None))
        for kind, check in self._checks():
            try:
                check(report, state)
            except Exception as exc:  # one broken check never hides the others
                report.problems.append(Problem(kind, "*", f"check did not finish: {_why(exc)}"))
        self._record_verify(report)
        return report

    def _checks(self) -> list[tuple[str, Callable[[WorkspaceVerifyReport, _VerifyState], None]]]:
        """``verify``'s checks, in order, each with the kind of problem it reports."""
        return [
            ("artifact", self._check_artifacts),
            ("statement", self._check_statements),
            ("model", self._check_models),
            ("audit", self._check_audit),
            ("file", self._check_files),
            ("row", self._check_rows),
            ("row", self._check_access_rows),
            ("row", self._check_blocks),
        ]

    def _check_artifacts(self, report: WorkspaceVerifyReport, state: _VerifyState) -> None:
        state.known = {ref.digest for ref in self.store.list()}
        on_disk = set(self.store.iter_digests())
        for digest in sorted(state.known - on_disk):
            report.problems.append(
                Problem("artifact", digest, "recorded but missing from the store")
            )
        for digest in sorted(on_disk - state.known):
            report.problems.append(Problem("artifact", digest, "in the store but not recorded"))
        todo = sorted(state.known & on_disk)
        for done, digest in enumerate(todo, 1):
            report.artifacts += 1
            try:
                self.store.verify(digest)
                state.good.add(digest)
            except Exception as exc:  # a damaged blob or row is one problem
                report.problems.append(Problem("artifact", digest, _why(exc)))
            state.step("artifacts", done, len(todo))

    def _check_statements(self, report: WorkspaceVerifyReport, state: _VerifyState) -> None:
        trusted = trusted_keys(self.keyring)
        for sid, envelope in self.statements.all():
            report.statements += 1
            try:
                if isinstance(envelope, Exception):
                    raise envelope
                statement = verify_statement(envelope, trusted)
                for subject in statement["subject"]:
                    digest = subject["digest"]["sha256"]
                    if state.known is not None and digest not in state.known:
                        raise IntegrityError(
                            f"subject {subject['name']} ({digest[:12]}…) is not in the store"
                        )
            except Exception as exc:  # a damaged row is one problem
                report.problems.append(Problem("statement", sid, _why(exc)))
        state.step("statements", report.statements, report.statements)

    def _check_models(self, report: WorkspaceVerifyReport, state: _VerifyState) -> None:
        records, history = self.models.audit_versions()
        report.problems.extend(Problem("model", ref, message) for ref, message in history)
        for record in records:
            report.models += 1
            try:
                self.models.verify_record(record, checked=state.good)
            except Exception as exc:  # a damaged row is one problem
                report.problems.append(Problem("model", record.ref, _why(exc)))
        state.step("models", report.models, report.models)

    def _check_rows(self, report: WorkspaceVerifyReport, state: _VerifyState) -> None:
        """Every metadata row against its MAC; a model row is the model check's to report."""
        with self.engine.connect() as conn:
            bad = scan(conn, self.rows)
        for row in bad:
            if row.table != "models":
                message = "does not match its MAC: written or edited outside Bastion"
                report.problems.append(Problem("row", f"{row.table}:{row.key}", message))
        state.step("rows", 1, 1)

    def _check_blocks(self, report: WorkspaceVerifyReport, state: _VerifyState) -> None:
        """Blocks the audit log records whose ``blocks`` row was deleted (security.blocks)."""
        for blk in self.block_store.missing():
            message = f"block of {blk.principal} is in the audit log (serve.block); its row is gone"
            report.problems.append(Problem("row", f"blocks:id={blk.id}", message))
        state.step("blocks", 1, 1)

    def _check_access_rows(self, report: WorkspaceVerifyReport, state: _VerifyState) -> None:
        """The access-control rows against their sealed state: deleted or put back."""
        try:
            problems = self.access_state.check(self.engine)
        except IntegrityError as exc:
            report.problems.append(Problem("row", STATE_FILE, str(exc)))
            return
        report.problems.extend(Problem("row", p.subject, p.message) for p in problems)
        state.step("access", 1, 1)

    def _check_audit(self, report: WorkspaceVerifyReport, state: _VerifyState) -> None:
        try:
            audit = self.audit.verify(checkpoint=state.checkpoint)
            report.audit_entries = audit.entries
            report.audit_checkpoints = audit.checkpoints
        except Error as exc:
            problems = exc.problems if isinstance(exc, AuditChainError) else []
            problems = problems or [str(exc)]
            report.problems.extend(Problem("audit", "audit-log", str(p)) for p in problems)
        state.step("audit", 1, 1)

    def _check_files(self, report: WorkspaceVerifyReport, state: _VerifyState) -> None:
        for path, mode, expected in loose_modes(self.home):
            what = "folder" if expected == 0o700 else "file"
            report.problems.append(
                Problem("file", str(path), f"{what} mode {mode:04o}; expected {expected:04o}")
            )


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
