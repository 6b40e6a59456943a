"""The baseline for bench_serving.py: a plain FastAPI + pydantic endpoint that only predicts.

What an engineer writes without Bastion: no TLS, no authentication, no limits, no
screening, no audit. It serves the SAME fitted model bytes as ``bastion serve`` (loaded from
a Bastion home through ``Workspace.open(home).models.load(ref)``), validates a body of the
same shape, ``{"instances": [{column: value, ...}, ...]}``, with a pydantic model of the 14
Adult feature columns (the 10 the model was fitted on required, with their types and
ranges; fnlwgt, education, race and sex optional and unused), and answers
``{"predictions": [label, ...]}`` from ``POST /predict``. One uvicorn worker, plain HTTP on
loopback, ``OMP_NUM_THREADS=1`` unless already set.

The model call is the SAME compiled model Bastion serves when the compiled inference path
exists (``bastion.spec.compiler.compile_model`` of the loaded pipeline, inputs decoded from
the pydantic instances straight into its arrays), so the comparison is of everything
around the model; ``--sklearn`` (or a Bastion without the compiled path) uses the
scikit-learn pipeline on a DataFrame instead. The start line says which.

    BASTION_MASTER_KEY=... python benchmarks/plain_server.py --home HOME [--model adult-income]
        [--port 8000]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/sklearn load

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

LABELS = ["<=50K", ">50K"]  # the pipeline maps Y to 0/1; these are its two categories


# At module level: FastAPI resolves the (string) annotations of the route from here.
class Instance(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    age: int = Field(ge=17, le=90)
    workclass: str | None
    fnlwgt: int | None = Field(default=None, ge=1, le=1_500_000)
    education: str | None = None
    education_num: int = Field(alias="education-num", ge=1, le=16)
    marital_status: str = Field(alias="marital-status")
    occupation: str | None
    relationship: str
    race: str | None = None
    sex: str | None = None
    capital_gain: int = Field(alias="capital-gain", ge=0, le=99999)
    capital_loss: int = Field(alias="capital-loss", ge=0, le=99999)
    hours_per_week: int = Field(alias="hours-per-week", ge=1, le=99)
    native_country: str | None = Field(alias="native-country")


class PredictRequest(BaseModel):
    instances: list[Instance] = Field(min_length=1, max_length=1000)


class PredictResponse(BaseModel):
    predictions: list[str]


def compiled_predictor(model: Any) -> Any:
    """``rows -> probabilities`` through the compiled model, or None where there is none."""
    try:
        import numpy as np

        try:
            from bastion.spec.compiler import compile_model
        except ImportError:
            from bastion.spec.compiled import compile_model  # type: ignore[attr-defined,no-redef]

        compiled = compile_model(getattr(model, "estimator", model))
    except Exception as exc:  # no compiled path in this Bastion, or this model has none
        print(f"plain: scikit-learn model ({type(exc).__name__}: {exc})", file=sys.stderr)
        return None
    numeric, categorical = list(compiled.numeric), list(compiled.categorical)

    def predict(rows: list[dict[str, Any]]) -> Any:
        num = np.array(
            [[np.nan if r[c] is None else r[c] for c in numeric] for r in rows], dtype=np.float64
        )
        codes = np.array(
            [[compiled.code_of(j, r[c]) for j, c in enumerate(categorical)] for r in rows],
            dtype=np.int64,
        ).reshape(len(rows), len(categorical))
        return compiled.predict_proba(num, codes)

    print("plain: compiled model", file=sys.stderr)
    return predict


def build_app(model: Any, *, sklearn: bool = False) -> Any:
    """The FastAPI app around a fitted scikit-learn pipeline (its compiled form unless
    ``sklearn``)."""
    import numpy as np
    import pandas as pd
    from fastapi import FastAPI

    columns = list(getattr(model, "feature_names_in_", []))
    classes = list(getattr(model, "classes_", []))
    names = classes if classes and all(isinstance(c, str) for c in classes) else LABELS
    table = np.array(names, dtype=object)
    app = FastAPI(title="plain Adult endpoint")
    fast = None if sklearn else compiled_predictor(model)

    @app.post("/predict", response_model=PredictResponse)
    def predict(req: PredictRequest) -> PredictResponse:
        rows = [i.model_dump(by_alias=True) for i in req.instances]
        frame = None if fast is not None else pd.DataFrame(rows)[columns]
        proba = fast(rows) if fast is not None else model.predict_proba(frame)
        labels = table[np.argmax(proba, axis=1)]
        return PredictResponse(predictions=list(labels))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="the Bastion home")
    parser.add_argument("--model", default="adult-income", help="NAME[:VERSION]")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--sklearn", action="store_true", help="not the compiled model")
    args = parser.parse_args(argv)
    passphrase = os.environ.get("BASTION_MASTER_KEY")
    if not passphrase:
        print("set BASTION_MASTER_KEY to the home's passphrase", file=sys.stderr)
        return 2

    import uvicorn
    from threadpoolctl import threadpool_limits

    from bastion.workspace import Workspace

    with Workspace.open(args.home, passphrase) as ws:
        model, _ = ws.models.load(args.model)
    threadpool_limits(limits=1)
    uvicorn.run(
        build_app(model, sklearn=args.sklearn),
        host="127.0.0.1",
        port=args.port,
        workers=1,
        access_log=False,
        log_level="warning",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
