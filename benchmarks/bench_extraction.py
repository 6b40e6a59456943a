"""Model extraction against a running ``bastion serve``: is every attack stopped early, by
the detector or by the budget, and is benign traffic left alone?

One run, one fresh home with the Adult model (as ``bench_serving.py`` makes it), one
``bastion serve adult-income`` on loopback (HTTPS, self-signed) with its defaults, except a
generous rate (the benchmark measures the detector and the budget, not the token bucket):
label-only answers, ``--on-extraction block``, ``--daily-budget auto`` (sized from the
model's signed extraction audit: 100 rows per principal per UTC day for Adult). Every stream
gets its own consumer token (its own principal) and sends requests of ``--batch`` rows. The
attackers are ordinary consumers, on the auto budget; each benign principal declares its
volume and gets ``--principal-budget NAME=ROWS`` sized to it, as an operator would give a
bulk scorer or a load test (the server's start WARNING that such a budget could copy the
model is expected).

Attacks (each stops at its first refusal, or at ``--cap`` rows). The attacker holds half of
``adult.test`` (its *pool*); the other half, labelled by the model, measures the surrogate:

* ``uniform``: rows drawn uniformly from the schema's ranges and categories;
* ``perturbed``: a random pool row with every numeric column moved by N(0, (0.1 sd)^2),
  rounded and clipped to the schema;
* ``boundary``: active learning: 20 pool rows, then rounds of 10 rows chosen among 400
  interpolations of answered rows of opposite labels, those nearest the current
  surrogate's boundary (probability closest to 0.5);
* ``pool``: the pool's real rows in random order.

At the refusal (or the cap): what stopped it (``detector``: 403 ``EXTRACTION_SUSPECTED``;
``budget``: 429 ``DAILY_BUDGET_EXHAUSTED``), the rows sent and answered, and the agreement
with the model of a surrogate (one-hot + HistGradientBoosting) trained on every answer
received. No detector can tell ``pool`` (real rows) from benign traffic: the budget is what
stops it (docs/extraction-detection.md).

Benign (0 refusals expected): ``replay`` (adult.test in order), ``identical`` (one row 400
times alone, then in batches of 100), ``hot keys`` (80 % of rows from 10 hot rows, the rest
new adult.test rows), ``pool load`` (``--tokens`` tokens, each cycling through the same 300
rows ``--cycles`` times from its own offset).

Goal: every attack refused, by the detector or the budget, before its surrogate reaches
90 % agreement and before 1,000 rows; no benign refusal. Exit 1 if a goal is missed (not
judged with ``--smoke``).

    python benchmarks/bench_extraction.py [--cap 1500] [--batch 10] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_serving as bs  # (home, server start and stop, shared with it)

GOAL_AGREEMENT = 0.90
GOAL_QUERIES = 1_000
Rows = list[dict[str, Any]]


def load_rows(columns: list[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """adult.test (features only, NA as None) and the pipeline's schema."""
    import yaml

    frame = pd.read_csv(bs.TEST_CSV, skipinitialspace=True, na_values=["?"])[columns]
    schema = yaml.safe_load(bs.EXAMPLE.read_text())["data"]["schema"]
    return frame, schema


def records(frame: pd.DataFrame) -> Rows:
    """JSON-ready rows: NaN becomes None, numpy scalars plain Python."""
    out = []
    for rec in frame.to_dict(orient="records"):
        out.append({k: (None if isinstance(v, float) and v != v else v) for k, v in rec.items()})
    return out


class Client:
    """One consumer token's view of the server: rows in, labels or a refusal out."""

    def __init__(self, url: str, token: str) -> None:
        import httpx

        self.http = httpx.Client(verify=False, timeout=30)  # noqa: S501 (self-signed, loopback)
        self.url = url + bs.BASTION_PATH
        self.headers = {"Authorization": f"Bearer {token}"}
        self.sent = 0
        self.refusal: str | None = None

    def ask(self, rows: Rows) -> list[str] | None:
        """The model's labels for ``rows``, or None once refused (code in ``refusal``)."""
        res = self.http.post(self.url, json={"instances": rows}, headers=self.headers)
        self.sent += len(rows)
        if res.status_code == 200:
            return list(res.json()["predictions"])
        body = (
            res.json() if res.headers.get("content-type", "").startswith("application/json") else {}
        )
        self.refusal = f"{res.status_code} {body.get('code') or body.get('error', '')}".strip()
        return None


def surrogate_agreement(
    xs: Rows, ys: list[str], held: pd.DataFrame, truth: np.ndarray, schema: dict[str, Any]
) -> float:
    """Agreement with the model, on ``held``, of a surrogate trained on (xs, ys)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder
    from threadpoolctl import threadpool_limits

    if not ys:
        return float("nan")
    if len(set(ys)) == 1:
        return float(np.mean(truth == ys[0]))
    cats = [c for c in held.columns if schema[c]["type"] not in ("int", "float")]
    nums = [c for c in held.columns if c not in cats]
    enc = ColumnTransformer(
        [
            ("c", OneHotEncoder(handle_unknown="ignore", sparse_output=False), cats),
            ("n", "passthrough", nums),
        ],
        sparse_threshold=0.0,
    )
    model = make_pipeline(enc, HistGradientBoostingClassifier(max_iter=100, random_state=0))
    x = pd.DataFrame(xs, columns=held.columns)
    x[cats] = x[cats].astype(object).where(x[cats].notna(), "NA")
    h = held.copy()
    h[cats] = h[cats].astype(object).where(h[cats].notna(), "NA")
    with threadpool_limits(1):
        model.fit(x, ys)
        return float(np.mean(model.predict(h) == truth))


# -- attack strategies: each yields the next request's rows, seeing the answers so far ----


def uniform(rng: np.random.Generator, schema: dict[str, Any], columns: list[str], n: int) -> Rows:
    """``n`` rows drawn uniformly from the schema's ranges and categories."""
    rows = []
    for _ in range(n):
        row: dict[str, Any] = {}
        for c in columns:
            spec = schema[c]
            if spec["type"] in ("int", "float"):
                row[c] = int(rng.integers(int(spec["min"]), int(spec["max"]) + 1))
            else:
                row[c] = str(rng.choice(spec["categories"]))
        rows.append(row)
    return rows


def perturb(
    row: dict[str, Any],
    rng: np.random.Generator,
    sds: dict[str, float],
    schema: dict[str, Any],
    scale: float = 0.1,
) -> dict[str, Any]:
    """``row`` with every numeric column moved by N(0, (scale * sd)^2), rounded, clipped."""
    out = dict(row)
    for c, sd in sds.items():
        if out.get(c) is None:
            continue
        v = out[c] + scale * sd * rng.normal()
        out[c] = round(float(min(max(v, schema[c]["min"]), schema[c]["max"])))
    return out


def interpolate(
    a: dict[str, Any], b: dict[str, Any], t: float, sds: dict[str, float], schema: dict[str, Any]
) -> dict[str, Any]:
    """A point on the segment from ``a`` to ``b`` (categories from the nearer end)."""
    out = dict(a if t < 0.5 else b)
    for c in sds:
        if a.get(c) is None or b.get(c) is None:
            continue
        v = a[c] + t * (b[c] - a[c])
        out[c] = round(float(min(max(v, schema[c]["min"]), schema[c]["max"])))
    return out


def attack(name: str, client: Client, ctx: dict[str, Any], cap: int, batch: int) -> dict[str, Any]:
    """Run one strategy until refused or ``cap`` rows; the surrogate's agreement then."""
    rng = np.random.default_rng(7)
    pool: Rows = ctx["pool"]
    schema, columns, sds = ctx["schema"], ctx["columns"], ctx["sds"]
    xs: Rows = []
    ys: list[str] = []

    def boundary_rows() -> Rows:
        if len(xs) < 20 or len(set(ys)) < 2:
            return [pool[int(i)] for i in rng.integers(len(pool), size=batch)]
        from sklearn.compose import ColumnTransformer  # the attacker's own surrogate
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        cats = [c for c in columns if c not in sds]
        enc = ColumnTransformer(
            [
                ("c", OneHotEncoder(handle_unknown="ignore"), cats),
                ("n", StandardScaler(), list(sds)),
            ]
        )
        sur = make_pipeline(enc, LogisticRegression(max_iter=300))
        frame = pd.DataFrame(xs, columns=columns)
        frame[cats] = frame[cats].astype(object).where(frame[cats].notna(), "NA")
        sur.fit(frame, ys)
        pos = [i for i, y in enumerate(ys) if y == ys[0]]
        neg = [i for i, y in enumerate(ys) if y != ys[0]]
        cands = [
            interpolate(
                xs[int(rng.choice(pos))],
                xs[int(rng.choice(neg))],
                float(rng.uniform()),
                sds,
                schema,
            )
            for _ in range(400)
        ]
        cf = pd.DataFrame(cands, columns=columns)
        cf[cats] = cf[cats].astype(object).where(cf[cats].notna(), "NA")
        p = sur.predict_proba(cf)[:, 1]
        return [cands[int(i)] for i in np.argsort(np.abs(p - 0.5))[:batch]]

    order = rng.permutation(len(pool))
    make: dict[str, Callable[[int], Rows]] = {
        "uniform": lambda k: uniform(rng, schema, columns, batch),
        "perturbed": lambda k: [
            perturb(pool[int(i)], rng, sds, schema) for i in rng.integers(len(pool), size=batch)
        ],
        "boundary": lambda k: boundary_rows(),
        "pool": lambda k: [pool[int(order[(k + j) % len(pool)])] for j in range(batch)],
    }
    began = time.perf_counter()
    while client.sent < cap:
        rows = make[name](client.sent)
        labels = client.ask(rows)
        if labels is None:
            break
        xs += rows
        ys += labels
    agreement = surrogate_agreement(xs, ys, ctx["held"], ctx["truth"], schema)
    return {
        "strategy": name,
        "rows": client.sent,
        "refused": client.refusal,
        "answered": len(ys),
        "agreement": agreement,
        "seconds": time.perf_counter() - began,
    }


def benign(
    name: str, clients: list[Client], ctx: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """Run one benign pattern; its refusals (expected: none)."""
    rows: Rows = ctx["all"]
    rng = np.random.default_rng(11)

    def streams() -> Iterator[tuple[Client, Rows]]:
        b = args.batch
        if name == "replay":
            for k in range(0, args.replay, b):
                yield clients[0], rows[k : k + b]
        elif name == "identical":
            for _ in range(400):
                yield clients[0], [rows[0]]
            for _ in range(3):
                yield clients[0], [rows[1]] * 100
        elif name == "hot keys":
            hot = rows[:10]
            fresh = iter(rows[10:])
            for _ in range(args.replay // b):
                yield (
                    clients[0],
                    [
                        hot[int(rng.integers(10))] if rng.uniform() < 0.8 else next(fresh)
                        for _ in range(b)
                    ],
                )
        else:  # pool load: every token cycles through the same 300 rows
            pool = rows[:300]
            for k in range(0, 300 * args.cycles, b):
                for t, client in enumerate(clients):
                    start = (k + 37 * t) % 300
                    yield client, [pool[(start + j) % 300] for j in range(b)]

    began = time.perf_counter()
    for client, batch in streams():
        client.ask(batch)
    refused = [c.refusal for c in clients if c.refusal]
    return {
        "pattern": name,
        "tokens": len(clients),
        "rows": sum(c.sent for c in clients),
        "refusals": len(refused),
        "codes": sorted(set(refused)),
        "seconds": time.perf_counter() - began,
    }


def detector_cost(columns: list[str]) -> tuple[float, float]:
    """In-process cost of the detector per single-row request, in microseconds: (new rows,
    exact repeats), with a profile of ``adult.data`` on the served columns."""
    import yaml

    from bastion.monitoring.extraction import ExtractionMonitor
    from bastion.monitoring.screening import TrainingProfile
    from bastion.spec.config import ColumnSpec

    spec = yaml.safe_load(bs.EXAMPLE.read_text())["data"]["schema"]
    train = pd.read_csv(bs.TEST_CSV.parent / "adult.data", skipinitialspace=True, na_values="?")
    profile = TrainingProfile.from_frame(
        train, {c: ColumnSpec(**spec[c]) for c in columns}, label="Y"
    )
    mon = ExtractionMonitor(profile)
    rows = [{c: [v] for c, v in r.items()} for r in records(train[columns].iloc[:2000])]
    out = []
    for _ in range(2):  # first pass: new rows; second: the same rows again (repeats)
        began = time.perf_counter()
        for k, row in enumerate(rows):
            mon.observe_columns(f"p{k // 500}", row)
        out.append((time.perf_counter() - began) / len(rows) * 1e6)
    return out[0], out[1]


def new_token(env: dict[str, str]) -> tuple[str, str]:
    """(token, principal) of a new consumer of the model, its own service principal."""
    created = subprocess.run(
        [*bs.BASTION, "token", "create", "--role", "consumer", "--deployment", bs.MODEL, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if created.returncode != 0:
        raise SystemExit(f"token create failed: {created.stderr}")
    issued = json.loads(created.stdout)
    return str(issued["token"]), str(issued["principal"])


BENIGN = ("replay", "identical", "hot keys", "pool load")


def declared_volume(name: str, args: argparse.Namespace) -> int:
    """The rows one principal of benign pattern ``name`` sends (what it would declare to the
    operator to get its ``--principal-budget``)."""
    batch, replay, cycles = int(args.batch), int(args.replay), int(args.cycles)
    if name == "replay":
        return len(range(0, replay, batch)) * batch
    if name == "identical":
        return 400 + 3 * 100
    if name == "hot keys":
        return replay // batch * batch
    return len(range(0, 300 * cycles, batch)) * batch  # pool load, per token


def start_server(
    env: dict[str, str], work: Path, budgets: dict[str, int]
) -> tuple[subprocess.Popen[bytes], str, Path]:
    """``bastion serve`` with its defaults (auto budget), a generous rate, and each benign
    principal's own budget; (process, URL, log)."""
    port = bs.free_port()
    log = work / "bastion.log"
    cmd = [*bs.BASTION, "serve", bs.MODEL, "--port", str(port), "--tls-self-signed"]
    cmd += ["--rate", "100000", "--burst", "1000"]
    for principal, rows in sorted(budgets.items()):
        cmd += ["--principal-budget", f"{principal}={rows}"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out)
    url = f"https://127.0.0.1:{port}"
    bs.wait_up(url, proc, log)
    return proc, url, log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None, help="reuse this Bastion home")
    parser.add_argument("--cap", type=int, default=1500, help="rows an attack may send")
    parser.add_argument("--batch", type=int, default=10, help="rows per request")
    parser.add_argument("--replay", type=int, default=3000, help="rows of the replay patterns")
    parser.add_argument("--tokens", type=int, default=20, help="tokens of the pool load test")
    parser.add_argument("--cycles", type=int, default=4, help="passes over the pool per token")
    parser.add_argument("--smoke", action="store_true", help="tiny, goals not judged")
    args = parser.parse_args(argv)
    if args.smoke:  # the cap above the auto budget (100 rows), so that the budget shows
        args.cap, args.replay, args.tokens, args.cycles = 150, 200, 2, 1
    with tempfile.TemporaryDirectory(prefix="bench-extraction-") as tmp:
        work = Path(tmp)
        home, passphrase, admin = bs.prepare_home(args, work)
        env = bs.base_env(home, passphrase, admin)
        from bastion.workspace import Workspace

        os.environ["BASTION_TOKEN"] = admin
        with Workspace.open(home, passphrase) as ws:
            model, _ = ws.models.load(bs.MODEL)
        columns = list(model.feature_names_in_)
        frame, schema = load_rows(columns)
        half = len(frame) // 2
        held = frame.iloc[half:].reset_index(drop=True)
        ctx = {
            "schema": schema,
            "columns": columns,
            "all": records(frame),
            "pool": records(frame.iloc[:half]),
            "held": held,
            "truth": np.asarray(model.predict(held)),
            "sds": {
                c: float(frame[c].std()) for c in columns if schema[c]["type"] in ("int", "float")
            },
        }
        attackers = {n: new_token(env) for n in ("uniform", "perturbed", "boundary", "pool")}
        benign_tokens = {
            n: [new_token(env) for _ in range(args.tokens if n == "pool load" else 1)]
            for n in BENIGN
        }
        budgets = {p: declared_volume(n, args) for n, ts in benign_tokens.items() for _, p in ts}
        proc, url, log = start_server(env, work, budgets)
        try:
            attacks = [
                attack(n, Client(url, tok), ctx, args.cap, args.batch)
                for n, (tok, _) in attackers.items()
            ]
            benigns = [
                benign(n, [Client(url, tok) for tok, _ in benign_tokens[n]], ctx, args)
                for n in BENIGN
            ]
        finally:
            bs.stop(proc)
        text = log.read_text()
        warnings = [ln for ln in text.splitlines() if ln.startswith("WARNING") and "copy" in ln]
        print(f"start warnings (a principal budget at or above the copy count): {len(warnings)}")
        alarms = [ln for ln in text.splitlines() if "extraction alarm" in ln]
    new, repeat = detector_cost(columns)
    print(f"detector cost per single-row request: {new:.0f} us (new row), {repeat:.0f} us (repeat)")
    return report(attacks, benigns, alarms, smoke=args.smoke)


def stopped_by(refusal: str | None) -> str:
    """Which control refused: ``detector`` (403 EXTRACTION_SUSPECTED), ``budget`` (429
    DAILY_BUDGET_EXHAUSTED), another code, or ``-`` (never refused)."""
    if refusal is None:
        return "-"
    if refusal.startswith("403") and "EXTRACTION_SUSPECTED" in refusal:
        return "detector"
    if refusal.startswith("429") and "DAILY_BUDGET_EXHAUSTED" in refusal:
        return "budget"
    return "other"


def report(
    attacks: list[dict[str, Any]], benigns: list[dict[str, Any]], alarms: list[str], *, smoke: bool
) -> int:
    """Print both tables and the goals; 1 when a goal is missed (0 with ``smoke``)."""
    ok = True
    print(
        f"{'attack':<11} {'stopped by':<10} {'rows sent':>9} {'answered':>8}  "
        f"{'refused with':<30} {'agreement':>9}  goal"
    )
    for a in attacks:
        by = stopped_by(a["refused"])
        caught = by in ("detector", "budget")
        met = caught and a["rows"] <= GOAL_QUERIES and a["agreement"] < GOAL_AGREEMENT
        ok &= met
        print(
            f"{a['strategy']:<11} {by:<10} {a['rows']:>9} {a['answered']:>8}  "
            f"{a['refused'] or '(never)':<30} {a['agreement']:>9.3f}  {'met' if met else 'MISSED'}"
        )
    print()
    print(f"{'benign':<11} {'tokens':>6} {'rows':>7} {'refusals':>9}  goal")
    for b in benigns:
        met = b["refusals"] == 0
        ok &= met
        codes = f" {b['codes']}" if b["codes"] else ""
        print(
            f"{b['pattern']:<11} {b['tokens']:>6} {b['rows']:>7} {b['refusals']:>9}  "
            f"{'met' if met else 'MISSED'}{codes}"
        )
    print()
    print(f"extraction alarms in the server's log: {len(alarms)}")
    for line in alarms:
        print("   ", line[line.find("extraction alarm") :][:160])
    load = os.getloadavg()
    print(f"load: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if smoke:
        print("smoke: goals not judged")
        return 0
    print("goals:", "all met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
