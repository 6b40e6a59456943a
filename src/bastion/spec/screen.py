"""The poisoning screen's section of a pipeline file (``data.screen``): one model per
detector (label flips, outliers, duplicates, backdoor triggers, shift) and the screen's own
policy. Detectors find; ``policy`` decides (``flag``, ``quarantine`` or ``fail``).
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field

from bastion.spec._checks import Strict

__all__ = [
    "DETECTORS",
    "BackdoorConfig",
    "DuplicatesConfig",
    "LabelNoiseConfig",
    "OutlierConfig",
    "ScreenConfig",
    "ShiftConfig",
]

Policy = Literal["flag", "quarantine", "fail"]
Detector = Literal["label_noise", "outliers", "duplicates", "backdoor", "shift"]
DETECTORS: tuple[str, ...] = get_args(Detector)  # the screen's detectors, in run order


class LabelNoiseConfig(Strict):
    """Label flips: out-of-fold probabilities + confident learning.

    Flag only by default: on data with honest ambiguity the detector also flags hard,
    correctly labelled rows (about 7% of Adult), and quarantining them costs accuracy
    (0.5 to 0.8 points on Adult). Set ``policy: quarantine`` where labels may be attacked.
    """

    policy: Policy | None = "flag"
    folds: int = Field(5, ge=2, le=20)
    max_train_rows: int = Field(
        200_000, ge=1_000, description="Each fold's model trains on at most this many rows."
    )
    min_confidence: float = Field(
        0.7, ge=0.5, lt=1, description="Least out-of-fold probability of the other class."
    )


class OutlierConfig(Strict):
    """Rows far from their own class in feature space (histogram scores per class)."""

    policy: Policy | None = "flag"
    threshold: float = Field(
        4.0, gt=0, description="Robust z-score of a row's outlier score that flags it."
    )


class DuplicatesConfig(Strict):
    """Exact duplicates and floods of near-identical rows."""

    policy: Policy | None = None
    flood_size: int = Field(5, ge=2, description="A group this large is a flood.")
    near: bool = Field(
        True,
        description="Also group rows equal but for one low-cardinality column, or with every"
        " number within 2%.",
    )
    ignore: list[str] = Field(
        default_factory=list, description="Columns left out of the comparison (e.g. ids)."
    )


class BackdoorConfig(Strict):
    """Rare values that predict one label among few rows (single values, not pairs)."""

    policy: Policy | None = None
    max_support: float = Field(0.02, gt=0, lt=0.5, description="Largest share of rows.")
    min_rows: int = Field(10, ge=3)
    min_purity: float = Field(0.9, gt=0.5, le=1, description="Share with the same label.")
    min_surprise: float = Field(
        12.0, gt=0, description="z-score of the label count against what the features predict."
    )
    min_lift: float = Field(
        0.5, gt=0, le=1, description="Share with the label minus the share the features predict."
    )


class ShiftConfig(Strict):
    """Change against the last accepted version of the same source."""

    policy: Policy | None = "flag"
    psi: float = Field(0.25, gt=0, description="Per-column population stability index.")
    class_balance: float = Field(
        0.05, gt=0, lt=1, description="Largest change of the positive-class share."
    )


class ScreenConfig(Strict):
    """The poisoning screen over training sources. Detectors find; ``policy`` decides."""

    policy: Policy = "quarantine"
    label_noise: LabelNoiseConfig = Field(default_factory=lambda: LabelNoiseConfig())
    outliers: OutlierConfig = Field(default_factory=lambda: OutlierConfig())
    duplicates: DuplicatesConfig = Field(default_factory=lambda: DuplicatesConfig())
    backdoor: BackdoorConfig = Field(default_factory=lambda: BackdoorConfig())
    shift: ShiftConfig = Field(default_factory=lambda: ShiftConfig())
    unsafe_skip: list[Detector] = Field(
        default_factory=list, description="Detectors not run. Logged and audited every run."
    )

    def policy_of(self, detector: str) -> str:
        """The detector's own policy, or the screen's."""
        own: str | None = getattr(self, detector).policy
        return own or self.policy
