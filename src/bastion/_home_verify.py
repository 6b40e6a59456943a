"""``bastion verify``'s checks of a whole home, and the report they fill.

:func:`verify_home` re-checks every artifact, signed statement, registered model (its place
in the signed, audited version history, signature, contract and provenance chain), the
audit log, the home's file modes (files 0600, folders 0700), every metadata row against its
MAC, the access rows against their sealed state and the server's blocks against the audit
log. It never raises for a failed check: each failure is a :class:`Problem` in the report,
a damaged row is one problem, and a check that breaks on something unexpected is one
problem too while every other check still runs. To add a check, add a
``_check_...(report, state)`` method to :class:`_Checks` and one line to its ``all``.

:meth:`bastion.workspace.Workspace.verify` is the public entry: it authorizes
``verify:run``, calls :func:`verify_home` and audits the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bastion._fs import loose_modes
from bastion.errors import AuditChainError, Error, IntegrityError
from bastion.security.access_state import STATE_FILE
from bastion.security.rows import scan
from bastion.security.signing import trusted_keys, verify_statement

if TYPE_CHECKING:
    from bastion.workspace import Progress, Workspace

__all__ = ["Problem", "WorkspaceVerifyReport", "verify_home"]


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


def verify_home(
    ws: Workspace, *, checkpoint: Path | None = None, progress: Progress | None = None
) -> WorkspaceVerifyReport:
    """Run every check on ``ws``'s home (see the module docstring); the report. Checks no
    permission and audits nothing: :meth:`Workspace.verify` does both."""
    report = WorkspaceVerifyReport()
    state = _VerifyState(checkpoint, progress or (lambda _s, _d, _t: None))
    for kind, check in _Checks(ws).all():
        try:
            check(report, state)
        except Exception as exc:  # one broken check never hides the others
            report.problems.append(Problem(kind, "*", f"check did not finish: {_why(exc)}"))
    return report


class _Checks:
    """The checks, each a method over the workspace's internal services."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    def all(self) -> list[tuple[str, Callable[[WorkspaceVerifyReport, _VerifyState], None]]]:
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
        store = self.ws.store
        state.known = {ref.digest for ref in store.list()}
        on_disk = set(store.iter_digests())
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
                store.verify(digest)
                state.good.add(digest)
            except Exception as exc:  # a damaged blob or row is one problem
                report.problems.append(Problem("artifact", digest, _why(exc)))
            state.step("artifacts", done, len(todo))

    def _check_statements(self, report: WorkspaceVerifyReport, state: _VerifyState) -> None:
        trusted = trusted_keys(self.ws.keyring)
        for sid, envelope in self.ws.statements.all():
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
        records, history = self.ws.models.audit_versions()
        report.problems.extend(Problem("model", ref, message) for ref, message in history)
        for record in records:
            report.models += 1
            try:
                self.ws.models.verify_record(record, checked=state.good)
            except Exception as exc:  # a damaged row is one problem
                report.problems.append(Problem("model", record.ref, _why(exc)))
        state.step("models", report.models, report.models)

    def _check_rows(self, report: WorkspaceVerifyReport, state: _VerifyState) -> None:
        """Every metadata row against its MAC; a model row is the model check's to report."""
        with self.ws.engine.connect() as conn:
            bad = scan(conn, self.ws.rows)
        for row in bad:
            if row.table != "models":
                message = "does not match its MAC: written or edited outside Bastion"
                report.problems.append(Problem("row", f"{row.table}:{row.key}", message))
        state.step("rows", 1, 1)

    def _check_blocks(self, report: WorkspaceVerifyReport, state: _VerifyState) -> None:
        """Blocks the audit log records whose ``blocks`` row was deleted (security.blocks)."""
        for blk in self.ws.block_store.missing():
            message = f"block of {blk.principal} is in the audit log (serve.block); its row is gone"
            report.problems.append(Problem("row", f"blocks:id={blk.id}", message))
        state.step("blocks", 1, 1)

    def _check_access_rows(self, report: WorkspaceVerifyReport, state: _VerifyState) -> None:
        """The access-control rows against their sealed state: deleted or put back."""
        try:
            problems = self.ws.access_state.check(self.ws.engine)
        except IntegrityError as exc:
            report.problems.append(Problem("row", STATE_FILE, str(exc)))
            return
        report.problems.extend(Problem("row", p.subject, p.message) for p in problems)
        state.step("access", 1, 1)

    def _check_audit(self, report: WorkspaceVerifyReport, state: _VerifyState) -> None:
        try:
            audit = self.ws.audit.verify(checkpoint=state.checkpoint)
            report.audit_entries = audit.entries
            report.audit_checkpoints = audit.checkpoints
        except Error as exc:
            problems = exc.problems if isinstance(exc, AuditChainError) else []
            problems = problems or [str(exc)]
            report.problems.extend(Problem("audit", "audit-log", str(p)) for p in problems)
        state.step("audit", 1, 1)

    def _check_files(self, report: WorkspaceVerifyReport, state: _VerifyState) -> None:
        for path, mode, expected in loose_modes(self.ws.home):
            what = "folder" if expected == 0o700 else "file"
            report.problems.append(
                Problem("file", str(path), f"{what} mode {mode:04o}; expected {expected:04o}")
            )
