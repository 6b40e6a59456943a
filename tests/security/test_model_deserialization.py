"""Unsafe deserialisation: a model file is data, and loading it must never run its code.

Each test is an attack on ``bastion.spec.serialization.load_model``: a pickle, a skops
archive that names a type off the trusted list (including estimators skops itself trusts),
crafted archives that would call ``builtins.eval`` or ``os.system``, an ``.npy`` holding a
pickled object array, trees whose node indices point outside their arrays, and random
damage to a real archive. Every one is refused with ``IntegrityError`` and, where the
payload would leave a trace, the trace is absent.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops
import skops.io as sio
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from skops.io._protocol import PROTOCOL

from bastion.errors import IntegrityError
from bastion.spec.serialization import dump_model, load_model

rng = np.random.default_rng(0)
X = rng.normal(size=(300, 4))
Y = (X[:, 0] + rng.normal(scale=0.5, size=300) > 0).astype(int)


def _json_node(value: Any) -> dict[str, Any]:
    return {
        "__class__": "str",
        "__module__": "builtins",
        "__loader__": "JsonNode",
        "content": json.dumps(value),
        "is_json": True,
    }


def _call_node(module: str, name: str, *args: Any) -> dict[str, Any]:
    """A node skops rebuilds by calling ``module.name(*args)``."""
    return {
        "__class__": name,
        "__module__": module,
        "__loader__": "ConstructorFromReduceNode",
        "content": {
            "__class__": "tuple",
            "__module__": "builtins",
            "__loader__": "TupleNode",
            "content": [_json_node(a) for a in args],
        },
    }


def _archive(schema: dict[str, Any], files: dict[str, bytes] | None = None) -> bytes:
    schema = {**schema, "protocol": PROTOCOL, "_skops_version": skops.__version__}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("schema.json", json.dumps(schema))
        for name, data in (files or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def _rewrite(data: bytes, edit: Any) -> bytes:
    """A copy of a real archive with ``edit(schema)`` applied and every other file kept."""
    src = zipfile.ZipFile(io.BytesIO(data))
    schema = json.loads(src.read("schema.json"))
    edit(schema)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("schema.json", json.dumps(schema))
        for name in src.namelist():
            if name != "schema.json":
                zf.writestr(name, src.read(name))
    return buf.getvalue()


def _pipeline(model: Any) -> Pipeline:
    features = ColumnTransformer([("numeric", StandardScaler(), [0, 1, 2, 3])])
    return Pipeline([("features", features), ("model", model)]).fit(X, Y)


@pytest.fixture(scope="module")
def linear_bytes() -> bytes:
    return dump_model(_pipeline(LogisticRegression()))


class _Payload:
    """Pickling this object makes unpickling create ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


def test_pickle_file_is_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(IntegrityError, match="not a skops model archive"):
        load_model(pickle.dumps(_Payload(marker)))
    assert not marker.exists()


def test_joblib_file_is_refused(tmp_path: Path) -> None:
    joblib = pytest.importorskip("joblib")
    buf = io.BytesIO()
    joblib.dump(_Payload(tmp_path / "pwned"), buf)
    with pytest.raises(IntegrityError):
        load_model(buf.getvalue())
    assert not (tmp_path / "pwned").exists()


def test_estimator_off_the_allow_list_is_refused_though_skops_trusts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = sio.dumps(_pipeline(GaussianNB()))
    assert sio.get_untrusted_types(data=data) == []  # skops alone would load it
    built: list[object] = []
    monkeypatch.setattr(
        GaussianNB, "__setstate__", lambda self, state: built.append(self), raising=False
    )
    with pytest.raises(IntegrityError, match=r"sklearn\.naive_bayes\.GaussianNB"):
        load_model(data)
    assert built == []


def test_crafted_eval_archive_is_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    data = _archive(_call_node("builtins", "eval", code))
    with pytest.raises(IntegrityError, match=r"builtins\.eval"):
        load_model(data)
    assert not marker.exists()
    # The payload is live: a loader that trusted what the file asks for would run it.
    sio.loads(data, trusted=["builtins.eval"])
    assert marker.exists()


def test_os_system_hidden_inside_a_real_model_is_refused(
    tmp_path: Path, linear_bytes: bytes
) -> None:
    marker = tmp_path / "pwned"

    def plant(schema: dict[str, Any]) -> None:
        params = schema["content"]["content"]["steps"]["content"][1]["content"][1]
        params["content"]["content"]["C"] = _call_node("os", "system", f"touch {marker}")

    with pytest.raises(IntegrityError, match=r"os\.system"):
        load_model(_rewrite(linear_bytes, plant))
    assert not marker.exists()


def test_function_reference_to_os_system_is_refused(linear_bytes: bytes) -> None:
    def plant(schema: dict[str, Any]) -> None:
        schema["content"]["content"]["memory"] = {
            "__class__": "system",
            "__module__": "os",
            "__loader__": "FunctionNode",
        }

    with pytest.raises(IntegrityError, match=r"os\.system"):
        load_model(_rewrite(linear_bytes, plant))


def test_bound_method_smuggling_is_refused(linear_bytes: bytes) -> None:
    def plant(schema: dict[str, Any]) -> None:
        model = schema["content"]["content"]["steps"]["content"][1]["content"][1]
        schema["content"]["content"]["memory"] = {
            "__class__": model["__class__"],
            "__module__": model["__module__"],
            "__loader__": "MethodNode",
            "content": {"func": "fit", "obj": model},
        }

    with pytest.raises(IntegrityError, match=r"LogisticRegression\.fit"):
        load_model(_rewrite(linear_bytes, plant))


def test_pickled_object_array_inside_npy_is_refused(tmp_path: Path, linear_bytes: bytes) -> None:
    marker = tmp_path / "pwned"
    evil = io.BytesIO()
    np.save(evil, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    src = zipfile.ZipFile(io.BytesIO(linear_bytes))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in src.namelist():
            zf.writestr(name, evil.getvalue() if name.endswith(".npy") else src.read(name))
    with pytest.raises(IntegrityError):
        load_model(buf.getvalue())
    assert not marker.exists()


def test_extra_trusted_takes_names_not_wildcards() -> None:
    data = sio.dumps(_pipeline(GaussianNB()))
    for pattern in ("sklearn.*", "sklearn", "sklearn.naive_bayes.*", "*"):
        with pytest.raises(ValueError, match="fully-qualified"):
            load_model(data, extra_trusted=[pattern])
    with pytest.raises(TypeError):
        load_model(data, extra_trusted="sklearn.naive_bayes.GaussianNB")
    with pytest.raises(IntegrityError):
        load_model(data, extra_trusted=["sklearn.naive_bayes.MultinomialNB"])  # another name
    name = "sklearn.naive_bayes.GaussianNB"
    assert load_model(data, extra_trusted=[name]).predict(X[:5]).shape == (5,)


def _corrupt_forest(field: str, value: int) -> bytes:
    model = _pipeline(RandomForestClassifier(n_estimators=3, max_depth=4, random_state=0))
    tree = model.named_steps["model"].estimators_[1].tree_
    state = tree.__getstate__()
    nodes = state["nodes"].copy()
    nodes[field][0] = value
    tree.__setstate__({**state, "nodes": nodes})  # scikit-learn accepts it as is
    return sio.dumps(model)


@pytest.mark.parametrize(
    ("field", "value"),
    [("left_child", 10**9), ("right_child", 0), ("feature", 10**6), ("feature", -5)],
    ids=["child-out-of-bounds", "child-cycle", "feature-out-of-bounds", "feature-negative"],
)
def test_forest_with_out_of_bounds_node_indices_is_refused(field: str, value: int) -> None:
    with pytest.raises(IntegrityError, match="out of bounds"):
        load_model(_corrupt_forest(field, value))


@pytest.mark.parametrize(("field", "value"), [("left", 10**9), ("right", 0), ("feature_idx", 99)])
def test_boosting_with_out_of_bounds_node_indices_is_refused(field: str, value: int) -> None:
    model = _pipeline(HistGradientBoostingClassifier(max_iter=3, random_state=0))
    nodes = model.named_steps["model"]._predictors[1][0].nodes
    nodes[field][0] = value
    with pytest.raises(IntegrityError, match="out of bounds"):
        load_model(sio.dumps(model))


def test_boosting_with_categorical_splits_is_refused() -> None:
    model = _pipeline(HistGradientBoostingClassifier(max_iter=3, random_state=0))
    model.named_steps["model"]._predictors[0][0].nodes["is_categorical"][0] = 1
    with pytest.raises(IntegrityError, match="categorical"):
        load_model(sio.dumps(model))


@pytest.mark.parametrize(
    "data",
    [b"", b"not a zip", b"PK\x03\x04" + b"\x00" * 40, _archive({"__class__": "x"})[:-10]],
    ids=["empty", "text", "zip-header-only", "truncated"],
)
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(IntegrityError):
        load_model(data)


def test_zip_without_schema_is_refused() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("model.pkl", pickle.dumps(1))
    with pytest.raises(IntegrityError, match="not a skops model archive"):
        load_model(buf.getvalue())


@settings(max_examples=60, deadline=None)
@given(position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_any_damaged_byte_loads_nothing_or_raises_integrity_error(
    linear_bytes: bytes, position: int, flip: int
) -> None:
    damaged = bytearray(linear_bytes)
    damaged[position % len(damaged)] ^= flip
    try:
        model = load_model(bytes(damaged))
    except IntegrityError:
        return
    assert model.predict(X[:3]).shape == (3,)  # damage where zip and CRC do not look
