"""A run's gating and releasing steps: verdicts kept and combined, the evaluation signed,
the model numbered and registered.

After each gating stage (``Stage.gates_output``) :meth:`ReleaseSteps.keep_verdict` keeps
its verdict (a failed gate audited as ``gates.fail``). Before the releasing stage
(``Stage.releases``) :meth:`~ReleaseSteps.combined_verdict` merges every gating stage's
verdict (:func:`bastion.pipeline.verdict.combine`) and applies an approver's override when
gates failed and one was given (audited as ``gates.override``);
:meth:`~ReleaseSteps.attest_evaluation` signs the model's evaluation;
:meth:`~ReleaseSteps.model_version` numbers the model from the signed, audited history of
its name (the same bytes keep their version). After the release,
:meth:`~ReleaseSteps.register` signs the release statement, which names the statement of
every stage, and commits the model's sealed row with its ``model.register`` entry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from bastion.pipeline import provenance
from bastion.pipeline.provenance import RELEASE_PREDICATE
from bastion.pipeline.record import now
from bastion.pipeline.run_state import RunState
from bastion.pipeline.verdict import combine, failed_gates, sign_evaluation
from bastion.spec.stage import Stage
from bastion.store.db import models

__all__ = ["ReleaseSteps"]


class ReleaseSteps(RunState):
    """The gating and releasing steps of a run."""

    def keep_verdict(self, stage: Stage, output: str) -> None:
        """Keep the gating stage's verdict; a failed gate is audited."""
        verdict: Mapping[str, Any] = self.value(f"{stage.name}.{output}")
        self.verdicts[stage.name] = verdict
        self.gates = combine(self.verdicts)["gates"]
        if not verdict.get("passed"):
            self.audit(
                "gates.fail",
                f"pipeline:{self.p.config.name}",
                "failed",
                {
                    "stage": stage.name,
                    "failed": [g for g in verdict.get("gates", []) if not g.get("passed")],
                },
            )

    def combined_verdict(self) -> dict[str, Any]:
        """Every gating stage's verdict in one (``passed``, ``gates``, ``metrics``: each
        stage's numbers), the override applied when gates failed and one was given."""
        verdict = combine(self.verdicts)
        metrics: dict[str, Any] = {}
        for out in self.verdicts.values():
            metrics.update(out.get("metrics") or out.get("values") or {})
        verdict["metrics"] = metrics
        if not verdict["passed"] and self.override_gates is not None and self.override is None:
            self.override = {"by": self.actor, "reason": self.override_gates}
            self.audit(
                "gates.override",
                f"pipeline:{self.p.config.name}",
                "ok",
                {
                    "failed": failed_gates(verdict["gates"]),
                    "reason": self.override_gates,
                },
            )
        verdict["override"] = self.override
        return verdict

    def attest_evaluation(
        self, released: Mapping[str, str], verdict: Mapping[str, Any], ref: str | None
    ) -> None:
        """The signed evaluation of the model about to be released (or held back)."""
        self.settle()
        results = {
            name: self.produced[f"{name}.{stage.gates_output}"][0]
            for stage in self.stages
            if (name := stage.name) in self.verdicts and stage.gates_output is not None
        }
        self.evaluation = sign_evaluation(
            self.ws,
            self.actor,
            digest=self.produced[released["model"]][0],
            ref=ref,
            pipeline=self.p.config.name,
            results=results,
            verdict=verdict,
            run_id=self.run_id,
            override=self.override,
        )

    def model_version(self, released: Mapping[str, str]) -> tuple[str, int, bool]:
        """(name, version, new?) for the model just trained: same bytes → same version.

        Numbered from the signed, audited history of the name (a damaged one is refused);
        the release statement before it is kept for :meth:`register` to chain onto."""
        name = self.p.config.release.name
        digest = self.produced[released["model"]][0]
        version, new, self.previous_release = self.ws.models.next_release(name, digest)
        return name, version, new

    def register(
        self,
        released: Mapping[str, str],
        model: tuple[str, int, bool],
        metrics: Mapping[str, Any],
    ) -> str:
        """Sign the release statement, the source of truth for the model's version and
        contract; a new version's row and its audit entry commit in one transaction."""
        self.settle()
        name, version, new = model
        digest = self.produced[released["model"]][0]
        train_table = self.produced[released["train_table"]][0]
        ref = f"{name}:{version}"
        chain = {r.name: r.statement for r in self.records if r.statement}
        card = self.records[-1].outputs  # the releasing stage's own outputs
        statement = self.ws.attest(
            provenance.release_subjects(ref, digest, self.config_ref, train_table, card),
            RELEASE_PREDICATE,
            provenance.release_predicate(
                ref=ref,
                name=name,
                version=version,
                previous=self.previous_release,
                run_id=self.run_id,
                pipeline=self.p.config.name,
                config_digest=self.p.config_digest,
                stages=chain,
                metrics=metrics,
                evaluation=self.evaluation,
            ),
            actor=self.actor,
        )
        if new:
            record = {  # shown by `bastion models list`; the contract is read from the release
                "metrics": dict(metrics.get("metrics", {})),
                "gates": metrics.get("gates", []),
                "card": card,
                "estimator": self.p.config.model.estimator,
                "stages": chain,
                "config": self.config_ref,
                "train_table": train_table,
            }
            self._insert_model(ref, name, version, digest, statement, record)
        return ref

    def _insert_model(
        self,
        ref: str,
        name: str,
        version: int,
        digest: str,
        statement: str,
        record: Mapping[str, Any],
    ) -> None:
        """The model's sealed row and its ``model.register`` entry, in one transaction."""
        with self.ws.engine.begin() as conn:
            row = {
                "name": name,
                "version": version,
                "digest": digest,
                "statement_id": statement,
                "run_id": self.run_id,
                "status": "registered",
                "created": now(),
                "record": json.dumps(record, default=str),
            }
            conn.execute(sa.insert(models).values(**self.ws.rows.sealed("models", row)))
            self.ws.audit.record_in(
                conn,
                self.actor,
                "model.register",
                f"model:{ref}",
                "ok",
                {"run": self.run_id, "digest": digest, "statement": statement},
            )
