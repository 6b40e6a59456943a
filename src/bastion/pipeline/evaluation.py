"""Signed evaluations: what the gates said about a model, an approver's override, and the
check the server makes before it serves a model.

An **evaluation statement** (:data:`EVALUATION_PREDICATE`, an in-toto statement signed
with the workspace key) names the model's digest and each gating stage's stored result
(``evaluate.metrics``, ``audit.<name>.result``) as subjects, and says in its predicate
every gate with its threshold and value, whether all passed, and any override. The runner
signs one for every run that reaches its gates (the release statement names it), and
``bastion evaluate NAME[:VERSION]`` signs a new one for a registered model
(:meth:`Evaluations.run`). Each is audited as ``model.evaluate`` on ``model:NAME:VERSION``
(``pipeline:NAME`` for a model that was never released) with the statement id and the
verdict.

**Override.** A failed gate stops the release; an approver may let it through with a
reason: ``bastion run --override-gates REASON`` (the caller must hold ``model:approve``
as well as ``pipeline:run``; the override is inside the signed evaluation and the release),
or ``bastion models approve NAME:VERSION --reason ...`` for a registered model whose newest
evaluation failed (:meth:`Evaluations.approve`: an :data:`OVERRIDE_PREDICATE` statement
naming that evaluation, signed under ``model:approve``, audited ``model.override``).

**Which evaluation counts.** The newest ``model.evaluate`` entry of the model in the audit
log — which is hash-chained, so dropping an entry is detected by ``bastion verify`` — names
the statement; that statement must exist, verify, name the model's digest and agree with
the entry. An attacker who deletes a failed evaluation's statement makes the model
unservable, not servable. :meth:`Evaluations.require_passed` (the server, at start) refuses
a model whose newest evaluation failed and was not overridden, with
:class:`~bastion.errors.EvaluationFailed` (exit 1).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.errors import ConfigError, EvaluationFailed, IntegrityError, NotFound
from bastion.pipeline.verdict import (
    EVALUATION_PREDICATE,
    OVERRIDE_PREDICATE,
    Evaluation,
    EvaluationReport,
    check_reason,
    failed_gates,
)

if TYPE_CHECKING:
    from bastion.pipeline.registry import ModelRecord
    from bastion.workspace import Workspace

__all__ = ["Evaluations"]

_SCAN = 10_000  # evaluate/override entries read per lookup (newest first)


class Evaluations:
    """A workspace's evaluations of registered models (``ws.evaluations``)."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    # -- reading ----------------------------------------------------------------------

    def _verified(self, sid: str, kind: str, where: str) -> dict[str, Any]:
        from bastion.security.signing import trusted_keys, verify_statement

        try:
            envelope = self.ws.statements.get(sid)
        except NotFound:
            raise IntegrityError(
                f"{where}: the {kind} statement {sid} named by the audit log is missing"
            ) from None
        statement = verify_statement(envelope, trusted_keys(self.ws.keyring))
        want = EVALUATION_PREDICATE if kind == "evaluation" else OVERRIDE_PREDICATE
        if statement["predicateType"] != want:
            raise IntegrityError(f"{where}: statement {sid} is not an {kind} statement")
        return dict(statement["predicate"])

    def _entries(self, action: str, resource: str) -> list[Any]:
        found = self.ws.audit.entries(action=action, newest_first=True, limit=_SCAN)
        return [e for e in found if e.resource == resource]

    def current(self, rec: ModelRecord) -> Evaluation | None:
        """The newest evaluation of ``rec`` (verified), with its override; None when the
        model was never evaluated under the audits (released before they existed)."""
        where = f"model {rec.ref}"
        entries = self._entries("model.evaluate", f"model:{rec.ref}")
        if not entries:
            return None
        entry = entries[0]
        sid = str((entry.details or {}).get("statement", ""))
        predicate = self._verified(sid, "evaluation", where)
        if predicate.get("model_digest") != rec.digest:
            raise IntegrityError(f"{where}: evaluation {sid} is of another model's bytes")
        passed = bool(predicate.get("passed"))
        if passed != bool((entry.details or {}).get("passed")):
            raise IntegrityError(f"{where}: evaluation {sid} disagrees with its audit entry")
        ev = Evaluation(
            statement=sid,
            model=predicate.get("model"),
            digest=rec.digest,
            passed=passed,
            gates=list(predicate.get("gates") or []),
            run_id=predicate.get("run_id"),
            results=dict(predicate.get("results") or {}),
            override=predicate.get("override"),
            seq=entry.seq,
        )
        ev.failed = failed_gates(ev.gates)
        if not passed and ev.override is None:
            ev.override = self._override_of(ev, rec, where)
        return ev

    def _override_of(self, ev: Evaluation, rec: ModelRecord, where: str) -> dict[str, Any] | None:
        for entry in self._entries("model.override", f"model:{rec.ref}"):
            details = entry.details or {}
            if entry.seq < ev.seq or details.get("evaluation") != ev.statement:
                continue
            sid = str(details.get("statement", ""))
            predicate = self._verified(sid, "override", where)
            if predicate.get("evaluation") != ev.statement or predicate.get("model_digest") != (
                rec.digest
            ):
                raise IntegrityError(f"{where}: override {sid} names another evaluation")
            return {"by": predicate.get("by"), "reason": predicate.get("reason"), "statement": sid}
        return None

    def require_passed(self, rec: ModelRecord) -> Evaluation | None:
        """EvaluationFailed unless the newest evaluation of ``rec`` passed or was
        overridden by an approver (a model never evaluated under the audits passes)."""
        ev = self.current(rec)
        if ev is not None and not ev.allows_serving:
            raise EvaluationFailed(
                f"model {rec.ref}: its signed evaluation {ev.statement[:12]} failed"
                f" ({'; '.join(ev.failed) or 'gates failed'}); an approver can let it"
                f" through: bastion models approve {rec.ref} --reason '...'",
                ev.failed,
            )
        return ev

    def show(self, ref: str) -> Evaluation | None:
        """The newest evaluation of ``ref`` (``model:read`` on the model)."""
        from bastion.pipeline.registry import parse_ref

        self.ws.authorize("model:read", resource_type="model", resource=parse_ref(ref)[0])
        return self.current(self.ws.models.get(ref))

    # -- writing ----------------------------------------------------------------------

    def approve(self, ref: str, reason: str) -> str:
        """Override the failed newest evaluation of ``ref`` with ``reason``; the override
        statement's id. Needs ``model:approve`` on the model; audited ``model.override``."""
        reason = check_reason(reason)
        rec = self.ws.models.get(ref)
        actor = self.ws.authorize("model:approve", resource_type="model", resource=rec.name)
        ev = self.current(rec)
        if ev is None or ev.passed:
            raise ConfigError(f"model {rec.ref}: its newest evaluation passed; nothing to approve")
        if ev.override is not None:
            raise ConfigError(
                f"model {rec.ref}: evaluation {ev.statement[:12]} was already overridden"
                f" by {ev.override.get('by')}"
            )
        sid = self.ws.attest(
            [("model", rec.digest)],
            OVERRIDE_PREDICATE,
            {
                "model": rec.ref,
                "model_digest": rec.digest,
                "evaluation": ev.statement,
                "failed": ev.failed,
                "by": actor.principal,
                "reason": reason,
            },
            approval=rec.name,
        )
        self.ws.audit.record(
            actor.principal,
            "model.override",
            f"model:{rec.ref}",
            "ok",
            {"evaluation": ev.statement, "statement": sid, "reason": reason[:500]},
        )
        return sid

    def run(
        self,
        ref: str,
        *,
        pipeline_file: Path | None = None,
        progress: Callable[[str, str, int, int], None] | None = None,
        steps: Callable[[str, int, int, str], None] | None = None,
    ) -> EvaluationReport:
        """Evaluate a registered model again: the evaluate stage and every audit of its own
        pipeline file (or of ``pipeline_file``: new audits and gates, same data) on its
        verified training and test tables; store each result, sign a new evaluation.
        Needs ``pipeline:run`` (and ``model:read`` on the model)."""
        from bastion.pipeline.reevaluate import reevaluate

        return reevaluate(self.ws, ref, pipeline_file=pipeline_file, progress=progress, steps=steps)
