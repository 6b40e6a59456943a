"""Input screening against the training profile: out-of-range, unseen categories and an
out-of-distribution score calibrated on Adult; JSON round trip; speed.

The Adult helpers here are shared with the extraction tests."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from bastion.errors import ConfigError, DataError
from bastion.monitoring.screening import QUANTILE_LEVELS, InputScreen, TrainingProfile
from bastion.spec.config import ColumnSpec

DATA = Path(__file__).resolve().parents[3] / "examples" / "adult-income"


@functools.cache
def schema() -> dict[str, ColumnSpec]:
    cfg = yaml.safe_load((DATA / "pipeline.yaml").read_text())
    return {k: ColumnSpec(**v) for k, v in cfg["data"]["schema"].items()}


@functools.cache
def frame(name: str) -> pd.DataFrame:
    return pd.read_csv(DATA / "data" / name, skipinitialspace=True, na_values="?")


@functools.cache
def profile() -> TrainingProfile:
    return TrainingProfile.from_frame(frame("adult.data"), schema(), "Y")


def benign_rows() -> list[dict]:
    return frame("adult.test").drop(columns="Y").to_dict("records")


def uniform_rows(n: int, rng: np.random.Generator) -> list[dict]:
    """Rows drawn uniformly from the schema's ranges and categories."""
    rows = []
    for _ in range(n):
        row: dict = {}
        for name, spec in schema().items():
            if name == "Y":
                continue
            if spec.type in ("int", "float"):
                row[name] = int(rng.integers(int(spec.min or 0), int(spec.max or 1) + 1))
            else:
                row[name] = str(rng.choice(spec.categories or []))
        rows.append(row)
    return rows


def test_profile_summarises_the_training_frame() -> None:
    p = profile()
    assert "Y" not in p.numeric and "Y" not in p.categorical
    age = p.numeric["age"]
    assert (age.min, age.max) == (17.0, 90.0)
    assert age.quantiles[0] == age.min and age.quantiles[-1] == age.max
    assert p.numeric["capital-loss"].max == 4356.0  # training range, not the schema's 99999
    assert p.categorical["sex"].frequencies["Male"] == pytest.approx(0.669, abs=0.001)
    assert p.categorical["workclass"].null_fraction > 0


def test_json_round_trip() -> None:
    p = profile()
    again = TrainingProfile.from_json(p.to_json())
    assert again == p
    assert again.to_json() == p.to_json()


@pytest.mark.parametrize(
    "text", ["{}", "not json", '{"format": "bastion.training-profile/1"}', "[]"]
)
def test_malformed_profile_json_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="training profile"):
        TrainingProfile.from_json(text)


def test_encode_is_zscores_then_one_hot() -> None:
    p = profile()
    rows = benign_rows()[:3]
    x = p.encode(rows)
    assert x.dtype == np.float32 and x.shape == (3, p.dim)
    k = len(p.numeric)
    age = p.numeric["age"]
    assert x[0, 0] == pytest.approx((25 - age.mean) / age.std, rel=1e-5)
    assert np.all(x[:, k:].sum(axis=1) == len(p.categorical))  # one hot per column
    unseen = p.encode([{**rows[0], "sex": "Robot", "age": None}])
    assert unseen[0, k:].sum() == len(p.categorical) - 1 and unseen[0, 0] == 0.0
    assert np.array_equal(p.encode(pd.DataFrame(rows)), x)


def test_out_of_training_range_and_unseen_categories_are_named() -> None:
    screen = InputScreen(profile())
    row = benign_rows()[0]
    [ok, bad] = screen.screen([row, {**row, "capital-loss": 9000, "race": "Martian"}])
    assert not ok.flagged and ok.out_of_range == () and ok.unseen_categories == ()
    assert bad.flagged
    assert bad.out_of_range == ("capital-loss",)
    assert bad.unseen_categories == ("race",)
    assert bad.ood_score > ok.ood_score


def test_benign_test_rows_are_rarely_flagged() -> None:
    results = InputScreen(profile()).screen(frame("adult.test"))
    rate = np.mean([r.flagged for r in results])
    assert rate <= 0.01, rate  # measured 0.23 %


def test_uniform_random_rows_are_flagged_by_the_score_alone() -> None:
    screen = InputScreen(profile())
    rows = uniform_rows(500, np.random.default_rng(0))
    assert np.mean([r.flagged for r in screen.screen(rows)]) > 0.95
    assert np.mean(screen.scores(rows) > screen.threshold) > 0.95  # measured 99.9 %


def test_policy_decides_and_is_validated() -> None:
    rows = [{**benign_rows()[0], "race": "Martian"}]
    flag = InputScreen(profile())
    reject = InputScreen(profile(), policy="reject")
    assert flag.screen(rows)[0].flagged and not flag.should_reject(flag.screen(rows))
    assert reject.should_reject(reject.screen(rows))
    assert not reject.should_reject(reject.screen(benign_rows()[:1]))
    with pytest.raises(ConfigError, match="policy"):
        InputScreen(profile(), policy="drop")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="threshold"):
        InputScreen(profile(), threshold=float("nan"))


def test_screening_100_rows_is_fast() -> None:
    screen = InputScreen(profile())
    rows = benign_rows()[:100]
    screen.screen(rows)
    start = time.perf_counter()
    for _ in range(20):
        screen.screen(rows)
    per_row = (time.perf_counter() - start) / 20 / 100
    assert per_row < 2e-4, per_row  # measured ≈ 0.05 ms per row


def test_empty_or_incomplete_frames_are_data_errors() -> None:
    with pytest.raises(DataError):
        TrainingProfile.from_frame(frame("adult.data").head(0), schema(), "Y")
    with pytest.raises(DataError, match="age"):
        TrainingProfile.from_frame(frame("adult.data").drop(columns="age"), schema(), "Y")


def _column_surprisal(prof: TrainingProfile, name: str, x: np.ndarray) -> np.ndarray:
    """The definition, one column at a time with searchsorted: -log2 of the two-sided tail
    probability read as upper bounds from the quantile grid, floored; nulls at their share."""
    stats = prof.numeric[name]
    q = np.asarray(stats.quantiles)
    levels = np.asarray((*QUANTILE_LEVELS, 1.0))
    i = np.searchsorted(q, x, side="right")
    p_le = np.where(i < len(q), levels[np.minimum(i, len(q))], 1.0)
    j = np.searchsorted(q, x, side="left")
    p_ge = np.where(j > 0, 1.0 - levels[np.maximum(j - 1, 0)], 1.0)
    floor = 1.0 / (prof.n_rows + 1)
    tail = np.clip(2.0 * np.minimum(p_le, p_ge), floor, 1.0)
    tail = np.where(np.isnan(x), max(stats.null_fraction, floor), tail)
    return -np.log2(tail)


def test_numeric_bits_equal_each_columns_surprisal() -> None:
    """The one-pass surprisal of every numeric column (what screening and the extraction
    detector use) equals the column-by-column definition, on quantile points, between them,
    outside the training range and for nulls."""
    rng = np.random.default_rng(3)
    prof = profile()
    names = list(prof.numeric)
    grid = [np.asarray(prof.numeric[n].quantiles) for n in names]
    raw = np.column_stack(
        [
            np.concatenate(
                [
                    q,
                    (q[:-1] + q[1:]) / 2,
                    [q[0] - 1, q[-1] + 1, np.nan],
                    rng.uniform(q[0], q[-1], 50),
                ]
            )
            for q in grid
        ]
    )
    got = prof.numeric_bits(raw)
    for j, name in enumerate(names):
        np.testing.assert_allclose(got[:, j], _column_surprisal(prof, name, raw[:, j]))
    assert np.isfinite(got).all() and (got >= 0).all()


def _edge_rows() -> list[dict]:
    """Real and uniform rows, and rows with what a request may carry: nulls, NaN, an absent
    column, an unseen or padded category, values outside the training range, a number sent
    as a string (read as pandas reads it, by the vectorised path)."""
    rows = benign_rows()[:300] + uniform_rows(100, np.random.default_rng(5))
    base = rows[0]
    edits = [
        {"age": None, "workclass": None},
        {"capital-gain": float("nan"), "occupation": float("nan")},
        {"age": 200, "hours-per-week": -3, "workclass": "Astronaut"},
        {"education": "  Bachelors ", "age": 17.5},
        {"age": "41"},
        {"fnlwgt": True},
    ]
    out = [*rows, *({**base, **edit} for edit in edits)]
    out.append({k: v for k, v in base.items() if k != "race"})  # an absent column
    return out


def _columns(rows: list[dict]) -> dict[str, list]:
    names = list(rows[0])
    return {n: [r.get(n) for r in rows] for n in names}


def test_one_row_is_screened_as_in_a_batch() -> None:
    """A single row (the server's common case) takes a path without NumPy; its findings
    equal the same row's in a vectorised batch (the score within rounding)."""
    screen = InputScreen(profile())
    rows = _edge_rows()
    complete = [r for r in rows if len(r) == len(rows[0])]
    batch = screen.screen_columns(_columns(complete))
    assert any(r.out_of_range for r in batch) and any(r.unseen_categories for r in batch)
    for row, want in zip(complete, batch, strict=True):
        (got,) = screen.screen_columns({k: [v] for k, v in row.items()})
        assert (got.out_of_range, got.unseen_categories, got.flagged) == (
            want.out_of_range,
            want.unseen_categories,
            want.flagged,
        )
        assert got.ood_score == pytest.approx(want.ood_score, rel=1e-12, abs=1e-12)
    absent = rows[-1]
    (alone,) = screen.screen_columns({k: [v] for k, v in absent.items()})
    (framed,) = screen.screen([absent])  # a DataFrame: the vectorised path
    assert (alone.out_of_range, alone.unseen_categories) == (
        framed.out_of_range,
        framed.unseen_categories,
    )
    assert alone.ood_score == pytest.approx(framed.ood_score, rel=1e-12, abs=1e-12)
