"""The label's class names for a model's output columns: one rule for the Python API
(:meth:`bastion.pipeline.registry.ModelRegistry.load`) and the server, so both answer a
prediction with the same values."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.errors import ConfigError

if TYPE_CHECKING:
    from bastion.spec.config import DataConfig

__all__ = ["class_labels", "label_names"]


def class_labels(estimator: Any, positive: str, categories: list[str] | None) -> list[str]:
    """Class index → label name: 0/1 mean not-positive/positive (the train stage); the
    negative is the label's other category when it declares exactly two, else
    ``not <positive>``. String classes are kept as they are."""
    classes = list(getattr(estimator, "classes_", []))
    if classes and all(isinstance(c, str) for c in classes):
        return [str(c) for c in classes]
    if [int(c) for c in classes] != [0, 1]:
        raise ConfigError(f"model: expected a binary model (classes 0/1), got {classes}")
    others = [c for c in (categories or []) if c != positive]
    return [others[0] if len(others) == 1 else f"not {positive}", positive]


def label_names(estimator: Any, data: DataConfig) -> list[str]:
    """:func:`class_labels` for the pipeline file's label, its values read as text (an
    int label's classes are ``"0"``/``"1"``, as the data file writes them)."""
    spec = data.schema_[data.label.column]
    categories = None if spec.categories is None else [str(v) for v in spec.categories]
    return class_labels(estimator, data.label.positive_text, categories)
