"""The tools people serve a scikit-learn model with, for ``bench_serving.py`` (full runs only).

``mlflow models serve`` and BentoML with adaptive batching on (``batchable=True``: its best
configuration for single-row traffic) are installed from the package registry into a
throwaway virtual environment under ``/tmp`` (kept between runs while its requirements are
unchanged), never into the project's. Both serve the SAME fitted model Bastion serves: the
benchmark loads it from the home (verified) and hands it over as a pickle in the
benchmark's own private temporary folder (mode 0700, written and read by this benchmark's
processes on one machine: no trust boundary is crossed). One worker each,
``OMP_NUM_THREADS=1``. When the install fails or takes longer than ``INSTALL_TIMEOUT``, the
run records why and goes on without that side.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VENV = Path("/tmp/bench-competitors")
INSTALL_TIMEOUT = 900

BENTO_SERVICE = """
import pickle

import bentoml
import numpy as np
import pandas as pd

MODEL = {model!r}
COLUMNS = {columns!r}
LABELS = {labels!r}


@bentoml.service(workers=1)
class Adult:
    def __init__(self) -> None:
        with open(MODEL, "rb") as f:
            self.model = pickle.load(f)

    # a list of row objects (BentoML 1.4.40's batching fails on DataFrame inputs: its
    # dispatcher adds a shape tuple to an int), one DataFrame per adaptive batch
    @bentoml.api(batchable=True, max_batch_size=1000, max_latency_ms=1000)
    def predict(self, rows: list[dict]) -> list[str]:
        frame = pd.DataFrame(rows).reindex(columns=COLUMNS)
        proba = self.model.predict_proba(frame)
        return [LABELS[i] for i in np.argmax(proba, axis=1)]
"""

MLFLOW_SAVE = """
import pickle, sys
import mlflow.sklearn
with open(sys.argv[1], "rb") as f:
    model = pickle.load(f)
mlflow.sklearn.save_model(model, sys.argv[2], serialization_format="pickle")
"""


@dataclass
class Side:
    """A competitor ready to start: its command, where to POST, how to shape a body."""

    name: str
    cmd: list[str]
    cwd: Path
    url: str
    health: str
    wrap: str  # the JSON key the rows go under: "dataframe_records" | "frame"


def requirements() -> list[str]:
    """The competitors' packages, with the project's own scikit-learn, numpy and pandas."""
    import numpy
    import pandas
    import sklearn

    return [
        f"scikit-learn=={sklearn.__version__}",
        f"numpy=={numpy.__version__}",
        f"pandas=={pandas.__version__}",
        "mlflow",
        "bentoml",
    ]


def install(log: Path) -> tuple[Path | None, str]:
    """(the venv's bin folder, "") once mlflow and bentoml import there, else (None, why)."""
    wanted = "\n".join(requirements())
    marker = VENV / "bench-requirements.txt"
    bin_dir = VENV / "bin"
    if marker.exists() and marker.read_text() == wanted:
        return bin_dir, ""
    began = time.monotonic()
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        with log.open("ab") as out:
            subprocess.run(
                [str(bin_dir / "pip"), "install", "-q", *requirements()],
                stdout=out,
                stderr=out,
                timeout=INSTALL_TIMEOUT,
                check=True,
            )
        subprocess.run(
            [str(bin_dir / "python"), "-c", "import mlflow, bentoml"], check=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        return None, f"install took longer than {INSTALL_TIMEOUT} s (log: {log})"
    except (subprocess.CalledProcessError, OSError) as exc:
        return None, f"install failed after {time.monotonic() - began:.0f} s: {exc} (log: {log})"
    marker.write_text(wanted)
    return bin_dir, ""


def prepare(
    bin_dir: Path, work: Path, model: Any, labels: list[str], ports: tuple[int, int]
) -> tuple[list[Side], list[str]]:
    """The two sides serving ``model`` (pickled into ``work``), and why any is missing."""
    folder = work / "competitors"
    folder.mkdir(mode=0o700)
    blob = folder / "model.pkl"
    estimator = getattr(model, "estimator", model)  # the scikit-learn pipeline, unwrapped
    with blob.open("wb") as f:
        pickle.dump(estimator, f)  # our own model, our own private temp folder (see above)
    columns = list(estimator.feature_names_in_)
    sides: list[Side] = []
    missing: list[str] = []
    saved = folder / "mlflow-model"
    res = subprocess.run(
        [str(bin_dir / "python"), "-c", MLFLOW_SAVE, str(blob), str(saved)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if res.returncode == 0:
        cmd = [str(bin_dir / "mlflow"), "models", "serve", "-m", str(saved), "-p", str(ports[0])]
        cmd += ["-h", "127.0.0.1", "-w", "1", "--env-manager", "local"]
        url = f"http://127.0.0.1:{ports[0]}"
        sides.append(
            Side("mlflow", cmd, folder, url + "/invocations", url + "/health", "dataframe_records")
        )
    else:
        missing.append(f"mlflow: save_model failed: {res.stderr[-500:]}")
    service = folder / "bento_service.py"
    service.write_text(BENTO_SERVICE.format(model=str(blob), columns=columns, labels=labels))
    cmd = [str(bin_dir / "bentoml"), "serve", "bento_service:Adult", "--port", str(ports[1])]
    cmd += ["--host", "127.0.0.1"]
    url = f"http://127.0.0.1:{ports[1]}"
    sides.append(Side("bentoml", cmd, folder, url + "/predict", url + "/readyz", "rows"))
    return sides, missing


def rewrap(bodies: Path, key: str, dest: Path) -> Path:
    """The benchmark's ``{"instances": rows}`` bodies with the rows under ``key``."""
    with bodies.open() as src, dest.open("w") as out:
        for line in src:
            rows = json.loads(line)["instances"]
            out.write(json.dumps({key: rows}, separators=(",", ":")) + "\n")
    return dest
