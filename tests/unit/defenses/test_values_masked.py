"""Detectors name rows, columns and reasons; a data value in a finding's detail or a
trigger is masked unless the pipeline opts its column in (``data.show_values``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bastion.defenses._table import encode_table
from bastion.defenses.backdoor import Trigger
from bastion.defenses.outliers import outliers
from bastion.defenses.pii import mask, shown

SSN = "123-45-6789"


def test_shown_masks_unless_the_column_is_listed() -> None:
    assert shown("ssn", SSN) == "'***-**-6789'"
    assert shown("ssn", SSN, ("ssn",)) == repr(SSN)
    assert shown("ssn", None) == shown("ssn", float("nan")) == "null"
    assert shown("n", 1337) == "'****'" and shown("n", 1337, ("n",)) == "1337"


def test_a_trigger_is_described_and_reported_masked_unless_visible() -> None:
    t = Trigger("contact", SSN, ">50K", np.arange(12), 12, 1.0, 30.0)
    assert SSN not in t.describe() and "'***-**-6789'" in t.describe()
    assert t.to_json()["value"] == mask(SSN)
    shown_t = Trigger("contact", SSN, ">50K", np.arange(12), 12, 1.0, 30.0, visible=True)
    assert repr(SSN) in shown_t.describe() and shown_t.to_json()["value"] == SSN


def test_an_outlier_names_its_rarest_value_masked() -> None:
    n = 400
    df = pd.DataFrame(
        {
            "a": ["x"] * (n - 1) + ["jane.doe@example.com"],
            "b": ["p", "q"] * (n // 2),
        }
    )
    enc = encode_table(df, exclude=(), rare=10)
    y = np.zeros(n, dtype=np.int64)
    (found,) = [f for f in outliers(enc, y, ["c"], threshold=3.0) if f.row == n - 1]
    assert "jane.doe" not in found.detail and "rarest value a='j***@e***.com'" in found.detail
    (plain,) = [f for f in outliers(enc, y, ["c"], threshold=3.0, show=("a",)) if f.row == n - 1]
    assert "rarest value a='jane.doe@example.com'" in plain.detail
