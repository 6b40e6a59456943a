"""The evaluate section of a pipeline file: the metrics the evaluate stage reports, the
gates a model must pass (``min_<metric>``/``max_<metric>``), and how sensitive attributes
are grouped for the per-group (fairness) metrics.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import Field, field_validator

from bastion.spec._checks import Strict, check_gate_names
from bastion.spec._checks import at as _at

__all__ = ["METRICS", "EvaluateConfig", "FairnessConfig"]

Metric = Literal[
    "accuracy", "balanced_accuracy", "roc_auc", "f1", "precision", "recall", "log_loss", "brier"
]
METRICS: tuple[str, ...] = get_args(Metric)
"""Every metric the evaluate stage computes: what ``evaluate.metrics`` may list and what a
``min_<metric>``/``max_<metric>`` gate may name."""


class FairnessConfig(Strict):
    """How the sensitive attributes are grouped for the per-group metrics.

    A numeric sensitive attribute (schema type int or float) is cut into bins: the
    ascending edges given in ``bins`` (``age: [25, 45, 65]`` gives ``<25``, ``[25, 45)``,
    ``[45, 65)``, ``>=65``), or that many quantile bins of the test set (``age: 5``), else
    4 quantile bins. A group of fewer than ``min_group_size`` rows is shown with its count,
    marked too small, and left out of the differences; an attribute with more than
    ``max_groups`` groups gets a warning.
    """

    bins: dict[str, list[float] | Annotated[int, Field(ge=2, le=20)]] = Field(
        default_factory=dict,
        description="Per numeric sensitive column: ascending bin edges, or a number of"
        " quantile bins (default 4).",
    )
    min_group_size: int = Field(
        30, ge=1, description="Groups smaller than this are marked too small, not scored."
    )
    max_groups: int = Field(
        20, ge=2, description="An attribute with more groups than this gets a warning."
    )

    @field_validator("bins", mode="before")
    @classmethod
    def _bins_shape(cls, v: Any) -> Any:
        """One clear message per column, before pydantic tries each side of the union."""
        for col, edges in v.items() if isinstance(v, dict) else ():
            if isinstance(edges, int) and not isinstance(edges, bool):
                if not 2 <= edges <= 20:
                    raise _at(col, what=f"expected 2 to 20 quantile bins, got {edges}")
                continue
            numbers = isinstance(edges, list) and all(
                isinstance(e, int | float) and not isinstance(e, bool) for e in edges
            )
            if not numbers or not edges or sorted(set(edges)) != edges:
                raise _at(
                    col,
                    what="expected a number of quantile bins (2 to 20) or a list of at least"
                    f" one bin edge, strictly ascending; got {edges!r}",
                )
        return v


class EvaluateConfig(Strict):
    """Metrics to report and gates a model must pass (``min_<metric>`` / ``max_<metric>``)."""

    metrics: list[Metric] = Field(
        default_factory=lambda: ["accuracy", "balanced_accuracy", "roc_auc", "f1"]  # type: ignore[arg-type]
    )
    gates: dict[str, float] = Field(
        default_factory=dict,
        description="min_<metric> or max_<metric>: threshold; every gate is computed, checked"
        " and shown, whatever metrics lists.",
    )
    fairness: FairnessConfig = Field(default_factory=lambda: FairnessConfig())

    @field_validator("gates")
    @classmethod
    def _gate_names(cls, v: dict[str, float]) -> dict[str, float]:
        check_gate_names(v, METRICS, "evaluate", noun="metric")
        return v
