"""The server's choice of engine (serving/compiled.py) and the request decoder into the model's
input arrays (requests.InputArrays): compiled at parity, scikit-learn otherwise and said so,
a hostile compiled artifact refused, never a silent fallback."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline

from bastion.errors import IntegrityError
from bastion.serving.compiled import COMPILED, SKLEARN, choose_engine
from bastion.serving.requests import ColumnRule, InputArrays, RequestSchema
from bastion.spec.compiler import check_parity, compile_model
from bastion.spec.config import CategoricalFeatures, FeaturesConfig, NumericFeatures
from bastion.stages.features import build_transformer

XYZ = ("x", "y", "z")
RULES = [
    ColumnRule("a", "float", nullable=True),
    ColumnRule("n", "int"),
    ColumnRule("c", "category", True, categories=frozenset(XYZ), ordered=XYZ),
]
SCHEMA = RequestSchema(RULES, max_batch=100)


def _frame(seed: int, rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=rows),
            "n": rng.integers(0, 50, size=rows),
            "c": rng.choice(["x", "y", "z"], size=rows).astype(object),
        }
    )
    frame.loc[::6, "a"] = np.nan
    frame.loc[::5, "c"] = np.nan
    return frame


@pytest.fixture(scope="module")
def model() -> Any:
    features = FeaturesConfig(
        numeric=NumericFeatures(columns=["a", "n"]), categorical=CategoricalFeatures(columns=["c"])
    )
    train = _frame(0, 400)
    y = ((train["a"].fillna(0) > 0) ^ (train["c"] == "x")).astype(int)
    pipe = Pipeline(
        [
            ("features", build_transformer(features)),
            ("model", RandomForestClassifier(n_estimators=15, random_state=0)),
        ]
    )
    return pipe.fit(train, y)


@dataclass(frozen=True)
class _Contract:
    compiled: str | None
    parity: str | None


class Store:
    """Content-addressed bytes, as the artifact store hands them out (by SHA-256)."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return digest

    def read(self, digest: str) -> bytes:
        data = self.blobs[digest]
        if hashlib.sha256(data).hexdigest() != digest:
            raise IntegrityError("artifact does not match its digest")
        return data


def _release(model: Any, parity: dict[str, Any] | None = None) -> tuple[Store, _Contract]:
    store = Store()
    compiled = compile_model(model)
    parity = parity or check_parity(model, compiled, _frame(1, 200))
    return store, _Contract(store.put(compiled.to_bytes()), store.put(json.dumps(parity).encode()))


def _columns(frame: pd.DataFrame) -> dict[str, list[Any]]:
    return {
        c: [float("nan") if v is None or v != v else v for v in frame[c].tolist()]
        for c in frame.columns
    }


def test_input_arrays_decode_nulls_unknowns_and_numbers_without_a_dataframe() -> None:
    arrays = InputArrays(SCHEMA, ["a", "n"], [("c", {"x": 0, "y": 1})])
    numeric, codes = arrays({"a": [1.5, float("nan")], "n": [3, 4], "c": ["y", float("nan")]})
    assert numeric.dtype == np.float64 and numeric.shape == (2, 2)
    assert numeric[0].tolist() == [1.5, 3.0] and np.isnan(numeric[1, 0])
    assert codes.tolist() == [[1], [3]]  # null is len+1
    assert arrays({"a": [0.0], "n": [1], "c": ["z"]})[1].tolist() == [[2]]  # unknown is len


def test_input_arrays_refuse_inputs_that_are_not_the_requests_columns() -> None:
    with pytest.raises(ValueError, match="not the request's columns"):
        InputArrays(SCHEMA, ["a"], [("c", {})])
    with pytest.raises(ValueError, match="'c': a numeric input of type category"):
        InputArrays(SCHEMA, ["a", "c"], [("n", {})])


def test_parity_passed_serves_the_compiled_form_with_scikit_learns_answers(model: Any) -> None:
    store, contract = _release(model)
    engine = choose_engine(store.read, "m:1", contract, model, SCHEMA)
    assert engine.name == COMPILED and engine.reason == ""
    frame = _frame(2, 50)
    expected = model.predict_proba(frame)
    assert np.abs(engine.predict(_columns(frame)) - expected).max() <= 1e-12


def test_the_fallback_when_parity_failed_says_so(
    model: Any, caplog: pytest.LogCaptureFixture
) -> None:
    failed = {"status": "failed", "reason": "predictions differ", "max_abs_diff": 0.1}
    store, contract = _release(model, failed)
    with caplog.at_level(logging.WARNING, logger="bastion.serving"):
        engine = choose_engine(store.read, "m:1", contract, model, SCHEMA)
    assert engine.name == SKLEARN and engine.reason == "parity failed: predictions differ"
    assert "m:1: serving with scikit-learn, not the compiled form: parity failed" in caplog.text
    frame = _frame(3, 10)
    assert np.array_equal(engine.predict(_columns(frame)), model.predict_proba(frame))


def test_a_release_without_a_compiled_form_falls_back_and_says_why(model: Any) -> None:
    engine = choose_engine(Store().read, "m:1", _Contract(None, None), model, SCHEMA)
    assert engine.name == SKLEARN and "no compiled form" in engine.reason


def test_the_operator_may_ask_for_scikit_learn(model: Any) -> None:
    store, contract = _release(model)
    engine = choose_engine(store.read, "m:1", contract, model, SCHEMA, prefer=SKLEARN)
    assert engine.name == SKLEARN and "asked for scikit-learn" in engine.reason


def test_changed_compiled_bytes_are_refused_never_a_fallback(model: Any) -> None:
    store, contract = _release(model)
    assert contract.compiled
    data = bytearray(store.blobs[contract.compiled])
    data[len(data) // 2] ^= 0x01
    store.blobs[contract.compiled] = bytes(data)
    with pytest.raises(IntegrityError):
        choose_engine(store.read, "m:1", contract, model, SCHEMA)


def test_a_signed_but_hostile_compiled_form_is_refused_at_load(model: Any) -> None:
    """Even when its digest is the signed one (a hostile signer, a compiler bug), a
    document with an out-of-range child is refused, not evaluated."""
    store, contract = _release(model)
    assert contract.compiled
    doc = json.loads(store.blobs[contract.compiled])
    doc["model"]["left"][0] = 10**9
    hostile = store.put(json.dumps(doc).encode())
    with pytest.raises(IntegrityError, match=r"m:1: compiled artifact: model.left"):
        choose_engine(store.read, "m:1", _Contract(hostile, contract.parity), model, SCHEMA)


def test_a_parity_record_without_a_status_is_refused(model: Any) -> None:
    store, contract = _release(model)
    odd = store.put(b'{"passed": true}')
    with pytest.raises(IntegrityError, match="parity record"):
        choose_engine(store.read, "m:1", _Contract(contract.compiled, odd), model, SCHEMA)
