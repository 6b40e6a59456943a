"""The ``robustness`` audit: robust accuracy against perturbation budget, with adversarial
rows that stay valid under the declared schema.

:meth:`RobustnessAudit.measure` builds the :class:`~bastion.audits.constraints.Constraints`
of the schema (sensitive and ``immutable`` columns untouched, declared categories only,
integers integral, ranges kept), draws a seeded sample of ``samples`` held-out rows, and
runs :func:`bastion.audits.robustness.robustness_curve` at every budget of ``budgets`` and
``budget``:

- ``attack: auto`` is white-box PGD for a model with analytic gradients
  (``LogisticRegression``, ``MLPClassifier``) and the label-only decision attack otherwise
  (it starts from the nearest training row the model labels differently);
- ``robust_accuracy`` is the curve at ``budget`` and ``clean_accuracy`` the accuracy on the
  same rows, each with a Wilson interval (95%) over the attacked rows;
- ``sanity`` holds the curve's checks (no flips at budget 0, non-increasing in budget, and
  for PGD no better than the majority class at a huge budget) and one more that runs every
  time: no adversarial row breaks the schema (:meth:`Constraints.check`); a violation names
  the row, the column and the rule, never the value.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np

from bastion.audits.base import Audit, AuditData, AuditResult
from bastion.audits.constraints import Constraints
from bastion.audits.robustness import robustness_curve
from bastion.errors import ConfigError
from bastion.spec.audits import RobustnessAuditConfig

__all__ = ["WHITE_BOX", "RobustnessAudit", "choose_attack", "wilson"]

WHITE_BOX = ("LogisticRegression", "MLPClassifier")
"""Estimators whose margin gradient :func:`bastion.audits.robustness.margin_grad` computes
analytically; ``attack: auto`` runs PGD on these and the decision attack on the rest."""
_CONFIDENCE = 0.95
_SHOWN = 5  # violations named in a failed check


def choose_attack(attack: str, estimator: Any) -> Literal["pgd", "decision"]:
    """The attack ``attack`` (``auto``, ``pgd`` or ``decision``) runs on ``estimator``."""
    name = type(estimator).__name__
    if attack == "auto":
        return "pgd" if name in WHITE_BOX else "decision"
    if attack == "pgd" and not (
        name in WHITE_BOX or (hasattr(estimator, "coef_") and hasattr(estimator, "intercept_"))
    ):
        raise ConfigError(
            f"audits.robustness.attack: pgd needs a model with analytic gradients"
            f" ({', '.join(WHITE_BOX)} or another linear model); {name} has none, so use"
            f" 'decision' or 'auto'"
        )
    return "pgd" if attack == "pgd" else "decision"


class RobustnessAudit(Audit):
    """Robust accuracy of the model under schema-valid adversarial rows (see the module
    docstring)."""

    name: ClassVar[str] = "robustness"
    config_type: ClassVar[type[RobustnessAuditConfig]] = RobustnessAuditConfig
    config: RobustnessAuditConfig

    def load_problems(
        self, columns: Sequence[str], sensitive: Sequence[str]
    ) -> list[tuple[tuple[str, ...], str]]:
        """Immutable columns must be schema columns (``budget`` need not be in ``budgets``:
        it is added)."""
        return [
            (("immutable", str(i)), f"column {c!r} is not in data.schema")
            for i, c in enumerate(self.config.immutable)
            if c not in columns
        ]

    def budgets(self) -> list[float]:
        """Every budget measured: ``budgets`` and ``budget``, ascending."""
        return sorted({float(b) for b in self.config.budgets} | {float(self.config.budget)})

    def measure(self, data: AuditData) -> AuditResult:
        """Attack a seeded sample of held-out rows at every budget (see the module doc)."""
        cfg = self.config
        try:
            constraints = Constraints.from_schema(
                data.schema, data.transformer, sensitive=data.sensitive, immutable=cfg.immutable
            )
        except ValueError as exc:
            raise ConfigError(f"audits.robustness.immutable: {exc}") from exc
        attack = choose_attack(cfg.attack, data.estimator)
        sample = data.test.sample(n=min(cfg.samples, len(data.test)), random_state=data.seed)
        rows, y = data.xy(sample)
        budgets = self.budgets()
        data.progress(0, 2, f"{attack} attack on {len(rows)} rows at {len(budgets)} budgets")
        curve = robustness_curve(
            data.estimator,
            data.transformer,
            constraints,
            rows,
            y,
            budgets,
            attack=attack,
            norm=cfg.norm,
            categorical=cfg.categorical,
            pool=data.train[data.features] if attack == "decision" else None,
            steps=cfg.steps,
            seed=data.seed,
        )
        data.progress(1, 2, "checking the adversarial rows against the schema")
        sanity = [*curve.sanity, _schema_check(constraints, curve.adversarial, rows)]
        robust = curve.robust_accuracy[curve.budgets.index(float(cfg.budget))]
        n = curve.n
        values: dict[str, float | None] = {
            "robust_accuracy": robust,
            "clean_accuracy": curve.clean_accuracy,
        }
        intervals = {k: wilson(round(v * n), n) for k, v in values.items() if v is not None and n}
        details = curve.to_dict() | {
            "budget": float(cfg.budget),
            "immutable": sorted(constraints.immutable),
            "attack": attack,
            "interval": {"method": "wilson", "confidence": _CONFIDENCE},
        }
        details["sanity"] = sanity
        data.progress(2, 2, "done")
        warnings = []
        if n < cfg.samples:
            warnings.append(f"only {n} held-out rows to attack (samples: {cfg.samples})")
        return AuditResult(
            audit=self.name,
            values=values,
            intervals=intervals,
            details=details,
            sanity=sanity,
            warnings=warnings,
        )


def _schema_check(constraints: Constraints, adversarial: list[Any], rows: Any) -> dict[str, Any]:
    """One sanity check over every adversarial row the attacks produced."""
    broken = [v for adv in adversarial for v in constraints.check(adv, rows)]
    shown = "; ".join(str(v) for v in broken[:_SHOWN])
    more = f" (and {len(broken) - _SHOWN} more)" if len(broken) > _SHOWN else ""
    return {
        "check": "adversarial rows keep the schema",
        "passed": not broken,
        "detail": f"{len(broken)} violation(s): {shown}{more}"
        if broken
        else f"{sum(len(a) for a in adversarial)} adversarial rows checked, none breaks"
        " a constraint",
    }


def wilson(successes: int, n: int, confidence: float = _CONFIDENCE) -> list[float]:
    """The Wilson score interval of a proportion ``successes / n``."""
    if n <= 0:
        raise ValueError(f"wilson: expected n > 0, got {n}")
    z = statistics.NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if successes == 0 else max(0.0, float(centre - half))
    high = 1.0 if successes == n else min(1.0, float(centre + half))
    return [low, high]
