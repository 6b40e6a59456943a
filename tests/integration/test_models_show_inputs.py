"""``bastion models show`` prints the model's input schema (name, type, range or
categories), from the pipeline file its signed release names, and the same under
``inputs`` in ``--json``."""

from __future__ import annotations

import pytest

from tests.conftest import Home, copy_home, run_cli
from tests.integration.test_serve_first_request import INPUTS


@pytest.fixture(scope="module")
def home(adult_home: Home, tmp_path_factory: pytest.TempPathFactory) -> Home:
    return copy_home(adult_home, tmp_path_factory.mktemp("models-show") / "home")


def test_models_show_prints_the_input_schema(home: Home) -> None:
    res = run_cli(["models", "show", "adult-income", "--json"], home.env())
    assert res.code == 0, res.err
    inputs = res.json()["inputs"]
    assert [i["name"] for i in inputs] == INPUTS
    assert inputs[1] == {
        "name": "education-num",
        "type": "int",
        "nullable": False,
        "min": 1,
        "max": 16,
    }
    res = run_cli(["models", "show", "adult-income"], {**home.env(), "COLUMNS": "160"})
    assert res.code == 0, res.err
    assert "inputs" in res.out
    for name in INPUTS:
        assert name in res.out
    assert "[17, 90]" in res.out and "Federal-gov" in res.out
