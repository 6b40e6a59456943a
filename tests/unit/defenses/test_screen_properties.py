"""Property tests: the screen and the file reader take arbitrary input and answer with
findings or a Bastion error, never a crash (the data is untrusted input)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.data import read_file
from bastion.defenses.poisoning import DETECTORS, screen_table
from bastion.errors import Error
from bastion.spec.config import ScreenConfig

_cells = st.one_of(
    st.none(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
)


@st.composite
def tables(draw: st.DrawFn) -> pd.DataFrame:
    rows = draw(st.integers(0, 60))
    cols = draw(st.integers(1, 4))
    data = {f"c{j}": draw(st.lists(_cells, min_size=rows, max_size=rows)) for j in range(cols)}
    data["y"] = draw(st.lists(st.sampled_from(["a", "b", None]), min_size=rows, max_size=rows))
    return pd.DataFrame(data)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_any_table_is_screened_without_crashing(table: pd.DataFrame) -> None:
    cfg = ScreenConfig.model_validate({"label_noise": {"folds": 2}})
    result = screen_table(table, label="y", positive="b", cfg=cfg)
    assert result.rows == len(table)
    assert set(result.ran) | set(result.skipped) == set(DETECTORS)
    labelled = set(np.flatnonzero(table["y"].notna().to_numpy()).tolist())
    assert {f.row for f in result.findings if f.row is not None} <= labelled


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_read_as_a_table_or_a_clear_error(
    tmp_path_factory: pytest.TempPathFactory, blob: bytes
) -> None:
    path = tmp_path_factory.mktemp("blob") / "data.csv"
    path.write_bytes(blob)
    try:
        df = read_file(path)
    except Error as exc:
        assert str(exc) and "\n" not in str(exc).strip()
    else:
        assert isinstance(df, pd.DataFrame)
