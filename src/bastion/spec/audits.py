"""The ``audits:`` section of a pipeline file: which audits attack the model, and their gates.

An audit runs when its section is present (``audits: {membership: {}}`` runs it with the
defaults); none runs otherwise. Each section takes ``gates``: ``min_<value>`` or
``max_<value>`` of one of the numbers that audit measures (its ``VALUES``), checked here, so
a gate on a number the audit does not produce is refused at load with its line. What
depends on the rest of the file (columns named, a budget among the budgets) is checked by
the audit stage's ``load_problems``.

Every number is a measurement with its interval; the gates decide whether the model ships.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bastion.spec._checks import at as _at
from bastion.spec._checks import check_gate_names

__all__ = [
    "AUDIT_NAMES",
    "STRATEGIES",
    "AttributeInferenceAuditConfig",
    "AuditConfig",
    "AuditsConfig",
    "ExtractionAuditConfig",
    "FairnessAuditConfig",
    "MembershipAuditConfig",
    "MitigationConfig",
    "RobustnessAuditConfig",
    "Strategy",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


Strategy = Literal["synthetic", "pool"]
STRATEGIES: tuple[Strategy, ...] = ("synthetic", "pool")
Resamples = Annotated[int, Field(ge=0, le=100_000, description="Bootstrap resamples (0: none).")]
Confidence = Annotated[float, Field(gt=0, lt=1, description="Level of the intervals.")]


class AuditConfig(_Strict):
    """What every audit section has: its gates. ``VALUES`` are the numbers it may gate."""

    VALUES: ClassVar[tuple[str, ...]] = ()

    gates: dict[str, float] = Field(
        default_factory=dict,
        description="min_<value> or max_<value>: threshold, on the numbers this audit measures.",
    )

    @field_validator("gates")
    @classmethod
    def _gate_names(cls, v: dict[str, float]) -> dict[str, float]:
        check_gate_names(v, cls.VALUES, "this audit")
        return v


class MitigationConfig(_Strict):
    """Retrain-free or retrained mitigation with fairlearn; before and after are reported."""

    method: Literal["threshold_optimizer", "exponentiated_gradient"]
    constraint: Literal["demographic_parity", "equalized_odds"] = "demographic_parity"
    attribute: str | None = Field(
        None, description="The sensitive attribute to mitigate on (default: the first)."
    )


class FairnessAuditConfig(AuditConfig):
    """Per-group and intersectional rates with bootstrap intervals (binning and group sizes
    from ``evaluate.fairness``); gated values are the largest over the attributes (the
    smallest for the ratio)."""

    VALUES: ClassVar[tuple[str, ...]] = (
        "demographic_parity_difference",
        "disparate_impact_ratio",
        "equalized_odds_difference",
    )
    attributes: list[str] | None = Field(None, description="Default: data.sensitive.")
    intersectional: bool = True
    resamples: Resamples = 1000
    confidence: Confidence = 0.95
    mitigation: MitigationConfig | None = None


class RobustnessAuditConfig(AuditConfig):
    """Robust accuracy against budget under schema constraints; ``robust_accuracy`` is read
    at ``budget`` (one of ``budgets``)."""

    VALUES: ClassVar[tuple[str, ...]] = ("robust_accuracy", "clean_accuracy")
    attack: Literal["auto", "pgd", "decision"] = Field(
        "auto", description="auto: PGD for a differentiable model, else the decision attack."
    )
    norm: Literal["linf", "l2"] = "l2"
    budgets: list[Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: [0.0, 0.1, 0.25, 0.5, 1.0],
        description="Perturbation budgets, in standard deviations of the scaled features.",
    )
    budget: float = Field(0.25, ge=0, description="The budget robust_accuracy is read at.")
    immutable: list[str] = Field(
        default_factory=list, description="Columns an attacker cannot change (besides sensitive)."
    )
    categorical: int = Field(0, ge=0, description="Categorical columns an attack may swap.")
    samples: int = Field(500, ge=10, le=100_000, description="Test rows attacked.")
    steps: int = Field(20, ge=1, le=1000)


class MembershipAuditConfig(AuditConfig):
    """LOSS and RMIA against members (training rows) and non-members (held-out rows), with
    reference models trained on a population half of the held-out rows; gated values are
    the strongest attack's."""

    VALUES: ClassVar[tuple[str, ...]] = (
        "membership_auc",
        "membership_tpr_at_1pct_fpr",
        "membership_tpr_at_0_1pct_fpr",
    )
    references: int = Field(4, ge=1, le=64, description="Reference models (RMIA).")
    samples: int = Field(5000, ge=100, description="Members and non-members each, at most.")
    resamples: Resamples = 1000
    confidence: Confidence = 0.95


class AttributeInferenceAuditConfig(AuditConfig):
    """How much better the model's outputs let an attacker infer each sensitive attribute
    than the other features alone; the gated value is the largest advantage."""

    VALUES: ClassVar[tuple[str, ...]] = ("attribute_inference_advantage",)
    attributes: list[str] | None = Field(None, description="Default: data.sensitive.")
    samples: int = Field(5000, ge=100, description="Held-out rows used, at most.")
    resamples: Resamples = 1000
    confidence: Confidence = 0.95


class ExtractionAuditConfig(AuditConfig):
    """A scripted extraction against the prediction function as served (output hardening
    included): surrogate fidelity against query count, per strategy; the gated value is the
    fewest queries any strategy needed for 90% agreement on held-out rows (the largest query
    count tried when none reached it: a lower bound, flagged in the result)."""

    VALUES: ClassVar[tuple[str, ...]] = ("extraction_queries_90pct", "extraction_fidelity")
    strategies: list[Strategy] = Field(
        default_factory=lambda: list(STRATEGIES),
        description="synthetic: rows drawn within the schema; pool: public rows like the data.",
    )
    queries: list[Annotated[int, Field(ge=10)]] = Field(
        default_factory=lambda: [100, 300, 1000, 3000],
        description="Query counts at which the surrogate is trained and measured, ascending.",
    )
    output: Literal["label", "probability"] = Field(
        "label", description="What the server answers: the label only, or the scores."
    )
    round: int | None = Field(
        None, ge=0, le=6, description="Decimals the served scores are rounded to."
    )

    @field_validator("queries")
    @classmethod
    def _ascending(cls, v: list[int]) -> list[int]:
        if not v or sorted(set(v)) != v:
            raise _at(what=f"expected query counts, strictly ascending; got {v}")
        return v


class AuditsConfig(_Strict):
    """The audits run after ``evaluate``, in this order; ``workers`` runs their independent
    tasks (reference models, attack batches) in that many processes."""

    fairness: FairnessAuditConfig | None = None
    robustness: RobustnessAuditConfig | None = None
    membership: MembershipAuditConfig | None = None
    attribute_inference: AttributeInferenceAuditConfig | None = None
    extraction: ExtractionAuditConfig | None = None
    workers: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = Field(
        1, description="Processes for the audits' independent tasks ('auto': the idle cores)."
    )

    def enabled(self) -> dict[str, AuditConfig]:
        """The audits to run, name → configuration, in run order."""
        found: dict[str, Any] = {n: getattr(self, n) for n in AUDIT_NAMES}
        return {n: c for n, c in found.items() if c is not None}


AUDIT_NAMES: tuple[str, ...] = (
    "fairness",
    "robustness",
    "membership",
    "attribute_inference",
    "extraction",
)
