"""The ``membership`` and ``attribute_inference`` audits: what a trained model gives away
about its rows (the measurements are :mod:`bastion.audits.membership`).

- :class:`MembershipAudit` attacks the model with LOSS and RMIA. Members are a seeded
  sample of at most ``samples`` training rows; the held-out rows are split (seeded) into a
  population half, on which the RMIA reference models train, and non-members (the other
  half, at most ``samples``), so the three sets are disjoint. The gated numbers are the
  strongest attack's: each value is the largest over the attacks, with the interval of the
  attack that gave it.
- :class:`AttributeInferenceAudit` measures, per sensitive attribute, how much better an
  attacker infers it from the other features plus the model's scores than from the other
  features alone; the gated number is the largest advantage over the attributes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from sklearn.base import clone

from bastion.audits.base import Audit, AuditData, AuditResult
from bastion.audits.membership import (
    AttributeInferenceResult,
    attribute_inference,
    membership_audit,
)
from bastion.spec.audits import AttributeInferenceAuditConfig, MembershipAuditConfig

__all__ = ["AttributeInferenceAudit", "MembershipAudit", "membership_split"]

#: gated value → the field of :class:`~bastion.audits.membership.AttackMetrics` it reads
_MEMBERSHIP_FIELDS = {
    "membership_auc": "auc",
    "membership_tpr_at_1pct_fpr": "tpr_at_1pct_fpr",
    "membership_tpr_at_0_1pct_fpr": "tpr_at_01pct_fpr",
}


def membership_split(
    n_train: int, n_test: int, samples: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row positions of the members (in the training rows), the non-members and the
    population (both in the held-out rows), as :class:`MembershipAudit` draws them."""
    rng = np.random.default_rng(seed)
    members = np.sort(rng.permutation(n_train)[:samples])
    order = rng.permutation(n_test)
    half = n_test // 2
    return members, np.sort(order[half:][:samples]), np.sort(order[:half])


def _read(attacks: dict[str, Any], field: str, name: str) -> float:
    return float(getattr(attacks[name], field))


class MembershipAudit(Audit):
    """LOSS and RMIA membership inference; values are the strongest attack's."""

    name: ClassVar[str] = "membership"
    config_type = MembershipAuditConfig
    config: MembershipAuditConfig

    def measure(self, data: AuditData) -> AuditResult:
        """Attack ``data.model`` with its training rows against held-out rows."""
        cfg = self.config
        if len(data.train) < 1 or len(data.test) < 2:
            raise ValueError(
                f"membership: expected at least 1 training row and 2 held-out rows, got"
                f" {len(data.train)} and {len(data.test)}"
            )
        X_train, y_train = data.xy(data.train)
        X_test, y_test = data.xy(data.test)
        mem, non, pop = membership_split(len(y_train), len(y_test), cfg.samples, data.seed)
        data.progress(0, 1, "membership: reference models and attacks")
        result = membership_audit(
            data.model,
            model_factory=functools.partial(clone, data.model),
            members=(X_train.iloc[mem], y_train[mem]),
            nonmembers=(X_test.iloc[non], y_test[non]),
            population=(X_test.iloc[pop], y_test[pop]),
            references=cfg.references,
            executor=data.executor,
            resamples=cfg.resamples,
            confidence=cfg.confidence,
            seed=data.seed,
        )
        data.progress(1, 1, "membership: done")
        values: dict[str, float | None] = {}
        intervals: dict[str, list[float]] = {}
        strongest: dict[str, str] = {}
        for value, field in _MEMBERSHIP_FIELDS.items():
            # ties go to the first attack (loss), so the choice never depends on dict luck
            best = max(result.attacks, key=functools.partial(_read, result.attacks, field))
            strongest[value] = best
            values[value] = float(getattr(result.attacks[best], field))
            intervals[value] = list(getattr(result.attacks[best], f"{field}_ci"))
        details = result.to_json() | {
            "strongest": strongest["membership_tpr_at_1pct_fpr"],
            "strongest_per_value": strongest,
        }
        return AuditResult(
            audit=self.name,
            values=values,
            intervals=intervals,
            details=details,
            warnings=list(result.warnings),
        )


@dataclass(frozen=True)
class _InferenceTask:
    others: Any
    attribute: Any
    outputs: np.ndarray
    name: str
    resamples: int
    confidence: float
    seed: int


def _infer(task: _InferenceTask) -> AttributeInferenceResult:
    return attribute_inference(
        task.others,
        task.attribute,
        task.outputs,
        name=task.name,
        resamples=task.resamples,
        confidence=task.confidence,
        seed=task.seed,
    )


class AttributeInferenceAudit(Audit):
    """How much the model's scores help infer each sensitive attribute; the value is the
    largest advantage over the attributes."""

    name: ClassVar[str] = "attribute_inference"
    config_type = AttributeInferenceAuditConfig
    config: AttributeInferenceAuditConfig

    def load_problems(
        self, columns: Sequence[str], sensitive: Sequence[str]
    ) -> list[tuple[tuple[str, ...], str]]:
        """Each configured attribute must be a column of the schema; with none configured,
        ``data.sensitive`` must name some."""
        known = set(columns)
        found: list[tuple[tuple[str, ...], str]] = [
            (("attributes", str(i)), f"column {name!r} is not in data.schema")
            for i, name in enumerate(self.config.attributes or [])
            if name not in known
        ]
        if self.config.attributes is None and not sensitive:
            found.append((("attributes",), "no attributes given and data.sensitive is empty"))
        return found

    def measure(self, data: AuditData) -> AuditResult:
        """Attack each attribute on a seeded sample of the held-out rows."""
        cfg = self.config
        attributes = list(cfg.attributes or data.sensitive)
        for i, name in enumerate(attributes):
            if name not in data.test.columns:
                raise ValueError(
                    f"attribute_inference.attributes[{i}]: no column {name!r} in the held-out"
                    " rows; expected a column of data.schema"
                )
        value = "attribute_inference_advantage"
        if not attributes:
            return AuditResult(
                audit=self.name,
                values={value: None},
                details={"attributes": {}},
                warnings=["no sensitive attribute to attack: set data.sensitive or attributes"],
            )
        rng = np.random.default_rng(data.seed)
        rows = np.sort(rng.permutation(len(data.test))[: cfg.samples])
        sample = data.test.iloc[rows]
        X = sample[data.features]
        outputs = np.asarray(data.model.predict_proba(X), dtype=np.float64)
        warnings = []
        tasks = []
        for name in attributes:
            if sample[name].nunique(dropna=False) < 2:
                warnings.append(f"{name}: one value in the {len(rows)} rows sampled; not attacked")
                continue
            others = [c for c in data.features if c != name]
            tasks.append(
                _InferenceTask(
                    sample[others],
                    sample[name],
                    outputs,
                    name,
                    cfg.resamples,
                    cfg.confidence,
                    data.seed,
                )
            )
        # one task per attribute, through the executor: its processes cap the attacker's
        # OpenMP threads (uncapped, gradient boosting ran ~20x slower on a busy machine)
        data.progress(0, len(attributes), "attribute inference")
        found = {t.name: r for t, r in zip(tasks, data.executor.map(_infer, tasks), strict=True)}
        data.progress(len(attributes), len(attributes), "attribute inference: done")
        details: dict[str, Any] = {"attributes": {n: r.to_json() for n, r in found.items()}}
        if not found:
            return AuditResult(self.name, {value: None}, details=details, warnings=warnings)
        worst = max(found, key=lambda n: found[n].advantage)
        return AuditResult(
            audit=self.name,
            values={value: found[worst].advantage},
            intervals={value: list(found[worst].advantage_ci)},
            details=details | {"largest": worst},
            warnings=warnings,
        )
