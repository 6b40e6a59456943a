"""The one contract every audit follows: configuration → run on a model and its held-out
data → numbers with intervals, the data for its plots, and a result per gate.

An audit is a small class: ``name``, the pydantic ``config_type`` of its pipeline-file
section (:mod:`bastion.spec.audits`), and :meth:`Audit.measure`, which attacks or measures
``data.model`` and returns an :class:`AuditResult` with

- ``values``: the numbers a gate may name (exactly the config type's ``VALUES``; ``None``
  where undefined, and a gate on ``None`` fails);
- ``intervals``: value name → ``[low, high]`` at the configured confidence, where measured;
- ``details``: the whole measurement as JSON (per group, per attack, per budget, curves:
  what the report draws from);
- ``sanity``: checks that must hold whenever the audit runs (``{"check", "passed",
  "detail"}``); a failed one makes the numbers untrustworthy, so it fails the audit's
  verdict whenever the audit has gates;
- ``warnings``: what a reader must know (too few rows for a figure, a group too small).

:meth:`Audit.run` calls ``measure`` and judges the gates; the audit stage
(:mod:`bastion.stages.audit`) stores, signs and reports the result, and ``bastion evaluate``
runs the same classes against a registered model. Heavy independent work goes through
``data.executor`` (:mod:`bastion.audits.executor`), never a pool of the audit's own.
Audits measure; they never change the model (mitigation reports a mitigated copy beside it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bastion.audits.executor import Executor, LocalExecutor

if TYPE_CHECKING:
    import pandas as pd

    from bastion.spec.audits import AuditConfig
    from bastion.spec.config import ColumnSpec

__all__ = ["Audit", "AuditData", "AuditResult", "check_gates"]


def _quiet(_done: int, _total: int, _what: str) -> None:
    return None


@dataclass(frozen=True)
class AuditData:
    """What an audit may read: the fitted model and the rows around it.

    ``model`` is the fitted pipeline that takes raw rows (``Pipeline([("features", ...),
    ("model", ...)])`` from the train stage; ``predict_proba`` on a DataFrame of the
    feature columns); ``train`` the rows it was trained on (members), ``test`` rows held out
    of training; both hold the label column and every column of the schema they kept
    (sensitive attributes included). ``positive`` is the label's positive class: ``y`` is
    ``table[label] == positive`` as 0/1.
    """

    model: Any
    train: pd.DataFrame
    test: pd.DataFrame
    label: str
    positive: Any
    sensitive: tuple[str, ...]
    schema: Mapping[str, ColumnSpec]
    seed: int = 0
    executor: Executor = field(default_factory=lambda: LocalExecutor(1))
    progress: Callable[[int, int, str], None] = _quiet
    fairness: Any = None  # bastion.spec.config.FairnessConfig: binning and group sizes

    @property
    def features(self) -> list[str]:
        """The raw columns the model reads, in its order."""
        names = getattr(self.model, "feature_names_in_", None)
        if names is None:
            return [c for c in self.test.columns if c != self.label]
        return [str(n) for n in names]

    def xy(self, table: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """The model's input columns of ``table`` and the 0/1 label."""
        y = (table[self.label] == self.positive).to_numpy(dtype="int64")
        return table[self.features], y

    @property
    def transformer(self) -> Any:
        """The fitted feature transformer (the pipeline's ``features`` step)."""
        return self.model.named_steps["features"]

    @property
    def estimator(self) -> Any:
        """The fitted estimator behind the transformer (the pipeline's ``model`` step)."""
        return self.model.named_steps["model"]


@dataclass
class AuditResult:
    """One audit's measurement and verdict (see the module docstring)."""

    audit: str
    values: dict[str, float | None]
    intervals: dict[str, list[float]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    sanity: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    gates: list[dict[str, Any]] = field(default_factory=list)
    passed: bool = True
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Audit:
    """Base of every audit; subclasses set ``name`` and ``config_type`` and implement
    :meth:`measure`."""

    name: ClassVar[str]
    config_type: ClassVar[type[AuditConfig]]

    def __init__(self, config: AuditConfig) -> None:
        if not isinstance(config, self.config_type):
            raise TypeError(
                f"{self.name}: expected a {self.config_type.__name__}, got {type(config).__name__}"
            )
        self.config = config

    def measure(self, data: AuditData) -> AuditResult:
        """Measure the model; numbers only, no verdict."""
        raise NotImplementedError

    def load_problems(
        self, columns: Sequence[str], sensitive: Sequence[str]
    ) -> list[tuple[tuple[str, ...], str]]:
        """What the rest of the pipeline file must agree with (columns this audit names),
        as ``(key path below the audit's section, what is wrong; what is expected)``."""
        return []

    def run(self, data: AuditData) -> AuditResult:
        """Measure, then judge every gate of the configuration (and the sanity checks)."""
        import time

        t0 = time.perf_counter()
        result = self.measure(data)
        unknown = sorted(set(result.values) ^ set(self.config_type.VALUES))
        if unknown:
            raise RuntimeError(f"audit {self.name} measured the wrong values: {unknown}")
        result.gates = check_gates(self.config.gates, result.values)
        insane = [s for s in result.sanity if not s.get("passed")]
        if insane and self.config.gates:
            result.warnings.append(
                "sanity check(s) failed, so the gated numbers cannot be trusted: "
                + "; ".join(f"{s['check']} ({s.get('detail', '')})" for s in insane)
            )
        result.passed = all(g["passed"] for g in result.gates) and not (
            insane and self.config.gates
        )
        result.seconds = round(time.perf_counter() - t0, 3)
        return result


def check_gates(
    gates: Mapping[str, float], values: Mapping[str, float | None]
) -> list[dict[str, Any]]:
    """One result per ``min_<value>``/``max_<value>`` gate; a missing value fails."""
    results = []
    for gate in sorted(gates):
        kind, _, metric = gate.partition("_")
        threshold = float(gates[gate])
        value = values.get(metric)
        if value is None:
            passed = False
        else:
            passed = value >= threshold if kind == "min" else value <= threshold
        results.append(
            {
                "gate": gate,
                "metric": metric,
                "threshold": threshold,
                "value": value,
                "passed": bool(passed),
            }
        )
    return results
