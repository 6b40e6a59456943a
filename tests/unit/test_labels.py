"""bastion.spec.labels: one rule for the class names the API and the server answer with."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.errors import ConfigError
from bastion.spec.config import DataConfig
from bastion.spec.labels import class_labels, label_names


class _Model:
    def __init__(self, classes: list[object]) -> None:
        self.classes_ = np.array(classes)


def _data(label: dict[str, object], schema: dict[str, object]) -> DataConfig:
    return DataConfig.model_validate(
        {"sources": {"main": {"format": "csv", "path": "d.csv", "sha256": "0" * 64}},
         "schema": {"x": {"type": "int"}, **schema}, "label": label}
    )  # fmt: skip


def test_two_categories_name_both_classes() -> None:
    data = _data(
        {"column": "y", "positive": ">50K"},
        {"y": {"type": "category", "categories": ["<=50K", ">50K"]}},
    )
    assert label_names(_Model([0, 1]), data) == ["<=50K", ">50K"]


def test_an_int_label_answers_its_values_as_text_like_the_data_file() -> None:
    data = _data({"column": "y", "positive": 1}, {"y": {"type": "int"}})
    assert label_names(_Model([0, 1]), data) == ["not 1", "1"]


def test_string_classes_are_kept_and_more_than_two_are_refused() -> None:
    assert class_labels(_Model(["a", "b"]), "b", None) == ["a", "b"]
    with pytest.raises(ConfigError, match="binary model"):
        class_labels(_Model([0, 1, 2]), "1", None)
