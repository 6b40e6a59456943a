"""The state one pipeline run's steps share, and the primitives every step uses.

:class:`RunState` holds what a run has produced so far (each ``stage.output``'s digest and
kind, the values already decoded, the stage records, the summary stages read), the gating
stages' verdicts, the evaluation and override, and the queue of audit entries: each step
queues its entries (:meth:`~RunState.audit`) without waiting, and
:meth:`~RunState.settle` confirms the queue before the run writes anything else. The
steps build on it: :class:`~bastion.pipeline.stage_steps.StageSteps` (one stage),
:class:`~bastion.pipeline.releasing.ReleaseSteps` (gates, evaluation, registration) and
the runner's own run (:mod:`bastion.pipeline.runner`), which starts and finishes it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bastion.pipeline.record import StageRecord
from bastion.spec.stage import Kind, Stage, decode

if TYPE_CHECKING:
    from bastion.pipeline.runner import Pipeline
    from bastion.workspace import Workspace

__all__ = ["Progress", "RunState", "StepProgress"]

Progress = Callable[[str, str, int, int], None]
"""``progress(stage, state, index, total)`` with state in running | cached | done | failed."""
StepProgress = Callable[[str, int, int, str], None]
"""``steps(stage, done, total, what)``: progress inside a running stage (``total`` 0 when
unknown), as the stage reports it through ``StageContext.progress``."""


class RunState:
    """One run of a pipeline in a workspace, as its ``actor``: what it has produced so far."""

    def __init__(
        self, pipeline: Pipeline, ws: Workspace, actor: str, progress: Progress | None, force: bool
    ) -> None:
        self.p = pipeline
        self.ws = ws
        self.actor = actor
        self.progress = progress or (lambda _n, _s, _i, _t: None)
        self.steps: StepProgress | None = None
        self.force = force
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self.run_id = f"{stamp}-{secrets.token_hex(4)}"
        self.produced: dict[str, tuple[str, Kind]] = {}  # "stage.output" → (digest, kind)
        self.values: dict[str, Any] = {}
        self.records: list[StageRecord] = []
        self.summary: dict[str, Any] = {"config_digest": pipeline.config_digest}
        self.materials: dict[str, list[dict[str, str]]] = {}
        self.config_ref = ""  # digest of the pipeline file, stored at the start of the run
        self.previous_release: str | None = None  # release statement of the version before
        self.gates: list[dict[str, Any]] = []  # every gating stage's gates, once they ran
        self.override_gates: str | None = None  # an approver's reason to pass failed gates
        self.verdicts: dict[str, Mapping[str, Any]] = {}  # gating stage → its gates output
        self.evaluation: str | None = None  # the signed evaluation statement
        self.override: dict[str, Any] | None = None  # the override used, if any
        self.stages: list[Stage] = []  # the pipeline's stages, once the run started
        self._pseudo: Any = None
        self._pending: list[Future[int]] = []  # audit entries queued, not yet confirmed

    def audit(
        self,
        action: str,
        resource: str,
        outcome: str = "ok",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Queue an audit entry of this run, as its actor.

        Queued, not awaited: the writer group-commits them while the stage works;
        :meth:`settle` confirms them before the run writes anything else (a stage's
        outputs, a registration, the run's end), so an audit failure still stops the run.
        """
        self._pending.append(
            self.ws.audit.submit(
                self.actor, action, resource, outcome, {"run": self.run_id, **(details or {})}
            )
        )

    def settle(self) -> None:
        """Wait until every queued audit entry is durable; AuditError if one is not."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def value(self, key: str) -> Any:
        """The value of ``stage.output`` ``key``: kept from the stage that made it, or
        read from the store (verified) and decoded once."""
        if key not in self.values:
            digest, kind = self.produced[key]
            self.values[key] = decode(kind, self.ws.store.read_bytes(digest))
        return self.values[key]

    def pseudonymizer(self) -> Any:
        """The keyring's pseudonymizer, made on first use (stages with a pseudonym key)."""
        if self._pseudo is None:
            from bastion.defenses.pii import KeyringPseudonymizer

            self._pseudo = KeyringPseudonymizer(self.ws.keyring)
        return self._pseudo
