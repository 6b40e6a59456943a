"""With one source, the poisoning screen runs before the split; its finds must leave the
train part only. A test set cleaned of the rows the screen found hard would measure the
model on easier data than it will meet, and the gates would pass on inflated numbers."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from tests.conftest import Home, run_cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_screen_quarantine_never_cleans_the_test_part(home: Home, tmp_path: Path) -> None:
    example = tmp_path / "loan-default"
    shutil.copytree(ROOT / "examples" / "loan-default", example)
    pipeline = example / "pipeline.yaml"
    text = pipeline.read_text()
    assert "label_noise: {policy: flag}" in text
    pipeline.write_text(
        text.replace("label_noise: {policy: flag}", "label_noise: {policy: quarantine}")
    )

    run = run_cli(["run", str(pipeline), "--json"], home.env(BASTION_THREADS="1"), timeout=300)
    assert run.code in (0, 1), run.err
    report = json.loads(Path(run.json()["report"]).with_name("report.json").read_text())
    data = report["validation"]["train"]
    assert data["screen"]["counts"]["label_noise"]["label_flip"] > 100  # quarantined
    tested = sum(map(sum, report["metrics"]["confusion_matrix"]["matrix"]))
    # the test part is test_size of every row the screen saw, none of them screened out
    assert tested == math.ceil(0.2 * data["rows_out"]), (tested, data["rows_out"])
