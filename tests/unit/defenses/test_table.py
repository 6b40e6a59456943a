"""bastion.defenses._table: one encoding for every detector — exact codes, coarse model
inputs that hide rare values, id-like columns skipped, infinities as null."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bastion.defenses._table import encode_table


def test_exact_codes_coarse_bins_and_rare_categories_hidden() -> None:
    n = 1_000
    df = pd.DataFrame(
        {
            "num": np.arange(n, dtype=float),
            "cat": ["common"] * 990 + ["rare"] * 10,
            "label": ["a", "b"] * 500,
        }
    )
    enc = encode_table(df, exclude=("label",), bins=8, rare=20)
    assert enc.columns == ["num", "cat"]
    assert len(np.unique(enc.exact[0])) == n  # exact values kept for duplicates/triggers
    assert len(np.unique(enc.coarse[:, 0])) == 8  # the model sees 8 quantile bins only
    assert np.isnan(enc.coarse[990:, 1]).all()  # "rare" (10 rows < 20) is hidden
    assert not np.isnan(enc.coarse[:990, 1]).any()
    assert enc.categorical_mask.tolist() == [False, True]


def test_id_like_text_is_skipped_and_infinities_are_null() -> None:
    df = pd.DataFrame(
        {
            "id": [f"user-{i}" for i in range(100)],
            "x": [np.inf, -np.inf, np.nan, *range(97)],
        }
    )
    enc = encode_table(df)
    assert enc.skipped == ["id"]
    assert (enc.exact[0][:3] == -1).all()
    assert np.isnan(enc.coarse[:3, 0]).all()


def test_empty_table_encodes() -> None:
    enc = encode_table(pd.DataFrame({"a": pd.Series([], dtype=float)}))
    assert enc.n == 0 and enc.coarse.shape == (0, 1)
