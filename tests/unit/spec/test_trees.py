"""The two tree evaluators: the QuickScorer bitmasks give the level walk's probabilities to
the bit (and scikit-learn's to 1e-6) on every supported tree ensemble, missing values going
either way, one row or many; trees they cannot represent exactly (too many leaves, single
leaves aside, or a malformed-but-valid shape) stay with the walk."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from bastion.spec.compiled import CompiledModel
from bastion.spec.compiler import compile_model
from bastion.spec.config import CategoricalFeatures, FeaturesConfig, ModelConfig, NumericFeatures
from bastion.spec.trees import TreeEnsemble, ensemble, predict_trees
from bastion.stages.features import build_transformer
from bastion.stages.train import make_estimator

# rows on both sides of the scorer's 64-row chunk
BATCHES = [1, 2, 63, 64, 65, 300]


def feature_config(impute: Any) -> FeaturesConfig:
    return FeaturesConfig(
        numeric=NumericFeatures(columns=["a", "b", "e"], impute=impute, scale="none"),
        categorical=CategoricalFeatures(columns=["c", "d"]),
    )


def frame(seed: int, rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = pd.DataFrame(
        {
            "a": rng.normal(size=rows),
            "b": rng.integers(0, 100, size=rows).astype(float),
            "e": rng.normal(size=rows) * 1e3,
            "c": rng.choice(["x", "y", "z", "w"], size=rows).astype(object),
            "d": rng.choice(["p", "q"], size=rows).astype(object),
        }
    )
    out.loc[rng.random(rows) < 0.15, "a"] = np.nan
    out.loc[rng.random(rows) < 0.05, "e"] = np.nan
    out["label"] = (out["a"].fillna(1.0) + (out["c"] == "x") + out["b"] / 50) > 1.2
    return out


def fit(estimator: str, params: dict[str, Any], train: pd.DataFrame, impute: Any = "none") -> Any:
    """NaN reaches the trees unless ``impute`` (GradientBoosting does not take it)."""
    from sklearn.pipeline import Pipeline

    pipe = Pipeline(
        [
            ("features", build_transformer(feature_config(impute))),
            ("model", make_estimator(ModelConfig(estimator=estimator, params=params), 7)),
        ]
    )
    with threadpool_limits(1):
        pipe.fit(train[["a", "b", "e", "c", "d"]], train["label"].astype(int))
    return pipe


def trees_of(compiled: CompiledModel) -> TreeEnsemble:
    """The ensemble from the stored document, through the public constructor."""
    m = compiled.doc["model"]
    arr = {k: np.asarray(m[k]) for k in ("feature", "threshold", "left", "right", "value")}
    return ensemble(
        arr["feature"].astype(np.intp),
        arr["threshold"].astype(np.float64),
        arr["left"].astype(np.intp),
        arr["right"].astype(np.intp),
        arr["value"].astype(np.float64),
        np.asarray(m["missing_left"], dtype=bool),
        np.asarray(m["roots"], dtype=np.intp),
        m["depth"],
        float32=m["float32"],
        combine=m["combine"],
        base=m.get("base", 0.0),
    )


def features(compiled: CompiledModel, rows: pd.DataFrame) -> np.ndarray:
    numeric = rows[list(compiled.numeric)].to_numpy(dtype=np.float64, na_value=np.nan)
    codes = np.array(
        [[compiled.code_of(j, v) for j, v in enumerate(r)] for r in rows[["c", "d"]].values],
        dtype=np.intp,
    ).reshape(len(rows), 2)
    return compiled.encode(numeric, codes)


ESTIMATORS = {  # params, the imputer, the masks' width
    "HistGradientBoostingClassifier": ({"max_iter": 30}, "none", np.uint32),
    "GradientBoostingClassifier": ({"n_estimators": 20, "max_depth": 4}, "median", np.uint32),
    "RandomForestClassifier": ({"n_estimators": 10, "max_depth": 6}, "none", np.uint64),
    "ExtraTreesClassifier": ({"n_estimators": 10, "max_leaf_nodes": 50}, "none", np.uint64),
}


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_quickscorer_gives_the_walks_probabilities_to_the_bit(estimator: str) -> None:
    params, impute, dtype = ESTIMATORS[estimator]
    model = fit(estimator, {**params, "random_state": 0}, frame(1, 800), impute)
    compiled = compile_model(model)
    trees = trees_of(compiled)
    assert trees.scorer is not None and trees.scorer.cleared.dtype == dtype
    walk = dataclasses.replace(trees, scorer=None)
    test = frame(2, max(BATCHES))
    x = features(compiled, test)
    assert np.isnan(x).any() == (impute == "none")
    for rows in BATCHES:
        fast = predict_trees(trees, x[:rows])
        assert np.array_equal(fast, predict_trees(walk, x[:rows])), rows
        # the served path, and scikit-learn on the same rows
        served = compiled.predict_frame(test.iloc[:rows])
        assert np.array_equal(served[:, 1], fast)
        expected = model.predict_proba(test.iloc[:rows][["a", "b", "e", "c", "d"]])
        np.testing.assert_allclose(served, expected, rtol=0, atol=1e-6)


def test_missing_values_go_both_ways_and_each_way_is_kept() -> None:
    model = fit("HistGradientBoostingClassifier", {"max_iter": 30}, frame(1, 800))
    trees = trees_of(compile_model(model))
    internal = ~trees.leaf
    assert trees.missing_left is not None
    assert {True, False} <= set(trees.missing_left[internal].tolist())
    assert trees.scorer is not None
    # a row missing every number goes each node's missing way, in both evaluators
    x = np.full((3, trees.feature.max() + 1), np.nan)
    x[1] = 0.0
    walk = dataclasses.replace(trees, scorer=None)
    assert np.array_equal(predict_trees(trees, x), predict_trees(walk, x))


def test_a_forest_with_more_than_64_leaves_a_tree_keeps_the_walk() -> None:
    params = {"n_estimators": 5, "random_state": 0}
    model = fit("RandomForestClassifier", params, frame(1, 800))
    compiled = compile_model(model)
    assert trees_of(compiled).scorer is None
    test = frame(2, 100)
    expected = model.predict_proba(test[["a", "b", "e", "c", "d"]])
    np.testing.assert_allclose(compiled.predict_frame(test), expected, rtol=0, atol=1e-6)


def small_forest(left: list[int], right: list[int], roots: list[int], depth: int) -> TreeEnsemble:
    n = len(left)
    return ensemble(
        np.arange(n, dtype=np.intp) % 2,
        np.linspace(-1.0, 1.0, n),
        np.array(left, dtype=np.intp),
        np.array(right, dtype=np.intp),
        np.arange(n, dtype=np.float64) / 8,
        np.arange(n) % 3 == 0,
        np.array(roots, dtype=np.intp),
        depth,
        float32=False,
        combine="sum",
        base=0.25,
    )


def rows(count: int) -> np.ndarray:
    x = np.random.default_rng(5).normal(size=(count, 2))
    x[::4, 0] = np.nan
    x[::3, 1] = np.nan
    return x


def test_a_single_leaf_tree_ends_in_its_only_leaf() -> None:
    # tree 0: one leaf (node 0); tree 1: a stump (1 -> 2, 3); tree 2: one leaf (node 4)
    forest = small_forest([0, 2, 2, 3, 4], [0, 3, 2, 3, 4], [0, 1, 4], 1)
    assert forest.scorer is not None
    walk = dataclasses.replace(forest, scorer=None)
    for count in (0, 1, 7, 64, 130):
        fast = predict_trees(forest, rows(count))
        assert fast.shape == (count,)
        assert np.array_equal(fast, predict_trees(walk, rows(count)))


MALFORMED = {
    # node 1's left child is the root: a cycle the walk leaves after depth + 1 steps
    "cycle": ([1, 0, 2, 3], [2, 3, 2, 3], [0], 2),
    # nodes 0 and 1 share the leaf 2 (a DAG, not a tree)
    "shared_child": ([1, 2, 2, 3], [3, 2, 2, 3], [0], 2),
    # node 1 points to itself on one side only
    "half_leaf": ([1, 1, 2, 3], [2, 3, 2, 3], [0], 2),
    # a tree deeper than the declared depth: the walk stops inside it
    "deeper_than_declared": ([1, 3, 2, 3, 4], [2, 4, 2, 3, 4], [0], 0),
    # two trees with the same root
    "shared_root": ([1, 1, 2], [2, 1, 2], [0, 0], 1),
}


@pytest.mark.parametrize("shape", sorted(MALFORMED))
def test_a_malformed_but_valid_tree_keeps_the_bounded_walk(shape: str) -> None:
    """Validation admits any in-range child; the scorer is built only for plain trees, so
    these evaluate exactly as before (the walk, bounded by the declared depth)."""
    left, right, roots, depth = MALFORMED[shape]
    forest = small_forest(left, right, roots, depth)
    assert forest.scorer is None
    assert predict_trees(forest, rows(10)).shape == (10,)
