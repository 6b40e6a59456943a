"""The compiled inference path end to end: the release compiles the model, checks parity on
the held-out table and signs both; the server predicts with the compiled form only through
the verified release, refuses a tampered one at load (exit 1, never a silent fallback), and
serves with scikit-learn, saying so, when the signed parity failed.

A slice of Adult (4,000 training rows, 1,500 test rows) keeps each run to seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from bastion.errors import IntegrityError
from tests.conftest import PASSPHRASE, Home, copy_home, run_cli
from tests.helpers.serve import serve

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "adult-income"
MODEL = "adult-income"


def _slice(src: Path, dest: Path, rows: int) -> None:
    lines = src.read_text().splitlines(keepends=True)
    dest.write_text("".join(lines[: rows + 1]))  # the header and the first rows


def _pipeline(folder: Path, seed: int) -> Path:
    doc = yaml.safe_load((EXAMPLE / "pipeline.yaml").read_text())
    _slice(EXAMPLE / "data" / "adult.data", folder / "train.csv", 4000)
    _slice(EXAMPLE / "data" / "adult.test", folder / "test.csv", 1500)
    for name, file in (("train", "train.csv"), ("test", "test.csv")):
        doc["data"]["sources"][name]["path"] = str(folder / file)
        data = (folder / file).read_bytes()
        doc["data"]["sources"][name]["sha256"] = hashlib.sha256(data).hexdigest()
    doc.pop("audits", None)
    doc["seed"] = seed
    doc["model"]["params"] = {"max_iter": 60, "early_stopping": False}
    doc["evaluate"]["gates"] = {"min_accuracy": 0.7}
    path = folder / f"pipeline-{seed}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    from bastion import Workspace

    root = tmp_path_factory.mktemp("compiled")
    ws, issued = Workspace.init(root / "home", PASSPHRASE, scrypt_log_n=14)
    ws.close()
    home = Home(root / "home", issued.token)
    res = run_cli(["run", str(_pipeline(root, 42)), "--json"], home.env(), timeout=600)
    assert res.code == 0, res.err
    return home


def _deployments(home: Home, **options: Any) -> dict[str, Any]:
    from bastion.serving.deployment import ServeOptions, check_options, load_deployments

    opts = ServeOptions(operator_token=home.token, **options)
    with home.open() as ws:
        return load_deployments(ws, [MODEL], opts, check_options([MODEL], opts))


def _test_columns(rows: int) -> dict[str, list[Any]]:
    frame = pd.read_csv(
        EXAMPLE / "data" / "adult.test", skipinitialspace=True, na_values="?", nrows=rows
    )
    frame.loc[::3, "occupation"] = None  # nulls of a nullable column
    out: dict[str, list[Any]] = {}
    for name in frame.columns:
        out[name] = [float("nan") if v is None or v != v else v for v in frame[name].tolist()]
        out[name] = [int(v) if isinstance(v, np.integer) else v for v in out[name]]
    return out


def test_the_release_signs_the_compiled_form_and_its_parity(home: Home) -> None:
    with home.open() as ws:
        _, verified = ws.models.load(MODEL)
        contract = verified.contract
        assert contract.compiled and contract.parity
        parity = json.loads(ws.store.read_bytes(contract.parity))
        compiled = json.loads(ws.store.read_bytes(contract.compiled))
    assert parity["status"] == "passed", parity
    assert parity["rows"] > 1000 and parity["max_abs_diff"] <= 1e-6
    assert parity["label_mismatches"] == 0
    assert compiled["format"] == "bastion.compiled/1" and compiled["model"]["kind"] == "trees"


def test_the_server_predicts_with_the_compiled_form_as_scikit_learn_does(home: Home) -> None:
    from bastion.serving.summary import server_summary

    deps = _deployments(home)
    dep = deps[MODEL]
    assert dep.inference == "compiled" and dep.inference_reason == ""
    summary = server_summary(deps, "http://127.0.0.1:1", None, "flush")
    assert summary["models"][0]["inference"] == "compiled"
    full = _test_columns(200)
    columns = {c: full[c] for c in dep.schema.columns}
    with home.open() as ws:
        model, _ = ws.models.load(MODEL)
    expected = model.predict_proba(pd.DataFrame(columns))

    async def predict() -> list[Any]:
        dep.batcher.start()
        try:
            return await dep.batcher.submit(columns)
        finally:
            await dep.batcher.close()

    got = np.vstack(asyncio.run(predict()))
    assert np.abs(got - np.asarray(expected)).max() <= 1e-9


def test_loading_a_deployment_limits_native_threads_to_one(home: Home) -> None:
    """The event loop predicts small batches itself: the native pools (OpenMP, BLAS) are
    limited to one thread once the deployments load, not only in the model's threads."""
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=2):
        if not any(p["num_threads"] > 1 for p in threadpool_info()):
            pytest.skip("no native thread pool here takes more than one thread")
        _deployments(home)
        assert [p["num_threads"] for p in threadpool_info()] == [1] * len(threadpool_info())


def test_a_tampered_compiled_artifact_is_refused_at_load(home: Home, tmp_path: Path) -> None:
    copy = copy_home(home, tmp_path / "home")
    with copy.open() as ws:
        digest = ws.models.load(MODEL)[1].contract.compiled
    assert digest
    blob = copy.path / "objects" / digest[:2] / digest
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="refusing to serve"):
        _deployments(copy)
    res = run_cli(["serve", MODEL, "--unsafe-no-tls", "--port", "1"], copy.env())
    assert res.code == 1, res.err
    assert "refusing to serve adult-income" in res.err and "Traceback" not in res.err


def test_a_release_whose_parity_failed_is_served_by_scikit_learn_and_says_so(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A mismatch forced at release (a tolerance no prediction can meet) is signed as
    "failed"; the server falls back, in its log and its start summary."""
    from bastion.pipeline.runner import Pipeline

    copy = copy_home(home, tmp_path / "home")
    monkeypatch.setattr("bastion.spec.compiler.TOLERANCE", -1.0)
    with copy.open() as ws:
        result = Pipeline.from_yaml(_pipeline(tmp_path, 7)).run(ws)
        assert result.status == "passed", result
        contract = ws.models.load(MODEL)[1].contract
        assert json.loads(ws.store.read_bytes(contract.parity))["status"] == "failed"
    monkeypatch.undo()
    with caplog.at_level(logging.WARNING, logger="bastion.serving"):
        dep = _deployments(copy)[MODEL]
    assert dep.inference == "scikit-learn" and "parity failed" in dep.inference_reason
    assert "serving with scikit-learn, not the compiled form: parity failed" in caplog.text
    running = serve(copy, "--unsafe-no-tls")
    try:
        (announced,) = running.announced["models"]
        assert announced["inference"] == "scikit-learn"
        assert announced["inference_reason"].startswith("parity failed")
        assert "not the compiled form" in running.log
    finally:
        running.stop()
