"""Bastion's inference server vs. a plain FastAPI endpoint, loaded with wrk on loopback.

One process run, one machine, the same Adult model bytes on both sides:

* **Bastion**: ``bastion serve adult-income --tls-self-signed`` with every control it has on:
  HTTPS (self-signed development certificate), bearer-token authentication and
  authorization (a consumer token for this deployment), body/batch/schema limits, the
  controls (rate limits, screening, extraction monitor) and one audit entry per request
  through group commit. Rate-limit flags (``--rate``, ``--burst``, ``--daily-budget``), where
  ``bastion serve --help`` lists them, are set very high: the benchmark measures throughput,
  not the limiter refusing it (the limiter still runs on every request).
* **Plain**: ``benchmarks/plain_server.py``: FastAPI + pydantic, ``POST /predict``, only
  predicts; plain HTTP, no token.

Both run one uvicorn worker with ``OMP_NUM_THREADS=1``. The home is a temporary one on which
the Adult pipeline runs first, or ``--home`` (then BASTION_MASTER_KEY and an admin
BASTION_TOKEN come from the environment). Each scenario loads both servers with wrk (a Lua
script cycles through real rows of adult.test, so the traffic looks benign to the screening
and the extraction monitor); a short warm-up precedes every measured run:

    single rows, 1 connection;  single rows, 16 connections;  single rows, 64 connections;
    100-row batches, 16

Goals (issue 14). At concurrency 1: Bastion's p50 <= 1.3x the plain endpoint's. At 16 and
64: Bastion's requests/s >= 1.0x the plain endpoint's, its p99 no worse, and single rows at
>= 1,700 req/s (c=16) and >= 3,000 (c=64). A full run also serves the same model with
``mlflow models serve`` and BentoML with adaptive batching (``serving_competitors.py``,
installed into a throwaway venv under /tmp; ``--no-competitors`` skips them) at c=16 and
c=64: Bastion >= 3x both. Any non-2xx answer or socket error makes the scenario FAIL; a
competitor that could not be installed or started is reported as not measured, and its goal
as missed. The exit status is 1 when any goal is missed.

    python benchmarks/bench_serving.py [--seconds 10] [--home HOME] [--wrk-threads 1] [--smoke]

``--smoke`` (CI: does it still run?): the pipeline runs on the first 3,000 training and
1,000 test rows with a 30-iteration model, each scenario is loaded for 1 s without warm-up,
the server runs with ``--on-extraction notify`` unless told otherwise (alarms printed, not
blocking: the small model's profile is not a deployment's), no competitor runs, and the
goals are not judged; a non-2xx answer or a socket error still fails it. It uses
wrk when it is installed and otherwise a small asyncio + httpx load generator (slower, as it
shares the CPUs with the servers: its figures are not comparable with wrk's).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "adult-income" / "pipeline.yaml"
TEST_CSV = EXAMPLE.parent / "data" / "adult.test"
MODEL = "adult-income"
BASTION_PATH = f"/v1/models/{MODEL}/predict"
GENEROUS = {"--rate": "1000000", "--burst": "1000000", "--daily-budget": "1000000000"}
SCENARIOS = (
    ("single row, c=1", 1, 1),
    ("single row, c=16", 1, 16),
    ("single row, c=64", 1, 64),
    ("100 rows, c=16", 100, 16),
)
#: Absolute single-row throughput goals (req/s), every control on.
MIN_RPS = {"single row, c=16": 1_700.0, "single row, c=64": 3_000.0}
P50_AT_C1 = 1.3  # Bastion's p50 / the plain endpoint's, at concurrency 1
VERSUS = 3.0  # Bastion's throughput / each competitor's
COMPETED = ("single row, c=16", "single row, c=64")
BASTION = [sys.executable, "-m", "bastion"]

LUA = r"""
local bodies = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if args[2] ~= nil and args[2] ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. args[2]
  end
  i = math.random(#bodies)
end
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {\"requests\": %d, \"duration_us\": %d, \"p50_us\": %d, \"p99_us\": %d, "
    .. "\"non2xx\": %d, \"errors\": %d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    errors: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bodies(workdir: Path, columns: list[str]) -> dict[int, Path]:
    """Request bodies from real adult.test rows: every row alone, and batches of 100."""
    import pandas as pd

    frame = pd.read_csv(TEST_CSV, skipinitialspace=True, na_values=["?"])[columns]
    rows: list[dict[str, Any]] = []
    for rec in frame.to_dict(orient="records"):
        rows.append({k: (None if isinstance(v, float) and v != v else v) for k, v in rec.items()})
    out = {}
    for size, count in ((1, len(rows)), (100, len(rows) // 100)):
        path = workdir / f"bodies-{size}.txt"
        with path.open("w") as f:
            for n in range(count):
                chunk = [rows[(n * size + k) % len(rows)] for k in range(size)]
                f.write(json.dumps({"instances": chunk}, separators=(",", ":")) + "\n")
        out[size] = path
    return out


def wait_up(url: str, proc: subprocess.Popen[bytes], log: Path, health: str = "") -> None:
    import httpx

    health = health or url + "/healthz"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            # the development certificate is self-signed; loopback only
            res = httpx.get(health, verify=False, timeout=1)  # noqa: S501
            if res.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server did not come up:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def limit_flags(env: dict[str, str]) -> list[str]:
    helptext = subprocess.run(
        [sys.executable, "-m", "bastion", "serve", "--help"],
        env={**env, "COLUMNS": "300", "TERM": "dumb", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout
    words = set(helptext.replace(",", " ").split())
    return [arg for flag, value in GENEROUS.items() if flag in words for arg in (flag, value)]


def wrk(
    url: str, script: Path, body: Path, token: str, conns: int, threads: int, seconds: float
) -> Run:
    cmd = [
        "wrk",
        f"-t{min(threads, conns)}",
        f"-c{conns}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
        "--",
        str(body),
        token,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"wrk failed ({res.returncode}): {res.stdout}\n{res.stderr}")
    d = json.loads(line[len("RESULT ") :])
    return Run(
        rps=d["requests"] / (d["duration_us"] / 1e6),
        p50_ms=d["p50_us"] / 1000,
        p99_ms=d["p99_us"] / 1000,
        non2xx=d["non2xx"],
        errors=d["errors"],
    )


def pyload(url: str, body: Path, token: str, conns: int, seconds: float) -> Run:
    """wrk's stand-in for ``--smoke`` where wrk is not installed: ``conns`` asyncio workers
    on one httpx client, each posting the next body as soon as the last answer came."""
    import asyncio

    import httpx

    lines = [ln.encode() for ln in body.read_text().splitlines()]
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    latencies: list[float] = []
    counts = {"non2xx": 0, "errors": 0}

    async def worker(client: httpx.AsyncClient, first: int, deadline: float) -> None:
        i = first
        while time.perf_counter() < deadline:
            i = (i + 1) % len(lines)
            t0 = time.perf_counter()
            try:
                res = await client.post(url, content=lines[i], headers=headers)
            except httpx.HTTPError:
                counts["errors"] += 1
                continue
            latencies.append(time.perf_counter() - t0)
            counts["non2xx"] += not 200 <= res.status_code < 300

    async def load() -> float:
        limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
        # the development certificate is self-signed; loopback only
        async with httpx.AsyncClient(verify=False, timeout=10, limits=limits) as client:  # noqa: S501
            began = time.perf_counter()
            deadline = began + seconds
            await asyncio.gather(*(worker(client, k * 997, deadline) for k in range(conns)))
            return time.perf_counter() - began

    elapsed = asyncio.run(load())
    ordered = sorted(latencies) or [0.0]

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return Run(
        rps=len(latencies) / elapsed,
        p50_ms=pct(0.50),
        p99_ms=pct(0.99),
        non2xx=counts["non2xx"],
        errors=counts["errors"],
    )


def probe(url: str, token: str, body: Path) -> str:
    """After a run with non-2xx answers: what a few of the same requests get now."""
    import httpx

    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    seen: dict[int, str] = {}
    with httpx.Client(verify=False, timeout=30) as client:  # noqa: S501 (self-signed, loopback)
        for line in body.read_text().splitlines()[:20]:
            res = client.post(url, content=line.encode(), headers=headers)
            seen.setdefault(res.status_code, res.text[:300])
    return "; ".join(f"{code}: {text}" for code, text in sorted(seen.items()))


def smoke_pipeline(work: Path) -> Path:
    """The example on its first 3,000 training and 1,000 test rows, 30 iterations, the
    accuracy gates lowered: the same stages and the same kind of model, in seconds."""
    import hashlib

    import yaml

    doc = yaml.safe_load(EXAMPLE.read_text())
    for name, rows in (("train", 3_000), ("test", 1_000)):
        source = doc["data"]["sources"][name]
        lines = (EXAMPLE.parent / source["path"]).read_bytes().splitlines(keepends=True)
        sample = work / f"smoke-{name}.csv"
        sample.write_bytes(b"".join(lines[: rows + 1]))  # the header and ``rows`` rows
        source["path"] = str(sample)
        source["sha256"] = hashlib.sha256(sample.read_bytes()).hexdigest()
    doc["model"]["params"]["max_iter"] = 30
    doc["evaluate"]["gates"] = {"min_accuracy": 0.5, "min_roc_auc": 0.5}
    path = work / "smoke-pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def prepare_home(args: argparse.Namespace, work: Path) -> tuple[Path, str, str]:
    """(home, passphrase, admin token): --home, or a fresh home with the pipeline run."""
    if args.home is not None:
        passphrase = os.environ.get("BASTION_MASTER_KEY", "")
        admin = os.environ.get("BASTION_TOKEN", "")
        if not passphrase or not admin:
            raise SystemExit("--home needs BASTION_MASTER_KEY and an admin BASTION_TOKEN")
        return args.home, passphrase, admin
    from bastion import Workspace

    passphrase = secrets.token_urlsafe(24)
    home = work / "home"
    ws, issued = Workspace.init(home, passphrase, scrypt_log_n=14)
    ws.close()
    env = base_env(home, passphrase, issued.token)
    pipeline = smoke_pipeline(work) if args.smoke else EXAMPLE
    print(f"running {pipeline.name} in a fresh home ...", flush=True)
    res = subprocess.run(
        [sys.executable, "-m", "bastion", "run", str(pipeline)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if res.returncode != 0:
        raise SystemExit(f"pipeline failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return home, passphrase, issued.token


def base_env(home: Path, passphrase: str, token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env.update(
        BASTION_HOME=str(home),
        BASTION_MASTER_KEY=passphrase,
        BASTION_TOKEN=token,
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
    )
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="each measured wrk run")
    parser.add_argument("--warmup", type=float, default=2, help="each warm-up wrk run")
    parser.add_argument("--home", type=Path, default=None, help="reuse this Bastion home")
    parser.add_argument(
        "--on-extraction",
        default=None,
        help="pass this --on-extraction to bastion serve (default: the server's, block)",
    )
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk -t (it shares the CPUs)")
    parser.add_argument(
        "--no-competitors",
        action="store_true",
        help="skip mlflow and BentoML (a full run installs them into a venv under /tmp)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="small pipeline, 1 s per scenario, goals not judged (CI: does it run?)",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.warmup = 1, 0
        # the smoke model's training profile has 3,000 rows, and the detector raised a
        # coverage alarm on adult.test replayed against it (after ~7,000 queries): the
        # detector still runs on every request and its alarms are printed, but they do not
        # block the smoke (a full run keeps the server's default, block)
        args.on_extraction = args.on_extraction or "notify"
    use_wrk = shutil.which("wrk") is not None
    if not use_wrk and not args.smoke:
        raise SystemExit("wrk not found (apt-get install wrk)")

    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        work = Path(tmp)
        home, passphrase, admin = prepare_home(args, work)
        env = base_env(home, passphrase, admin)
        created = subprocess.run(
            [*BASTION, "token", "create", "--role", "consumer", "--deployment", MODEL, "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if created.returncode != 0:
            raise SystemExit(f"token create failed: {created.stderr}")
        consumer = json.loads(created.stdout)["token"]

        from bastion.workspace import Workspace

        os.environ["BASTION_TOKEN"] = admin  # who opens the home, as the CLI's env says
        with Workspace.open(home, passphrase) as ws:
            model, _ = ws.models.load(MODEL)
        columns = list(model.feature_names_in_)
        files = bodies(work, columns)
        script = work / "post.lua"
        script.write_text(LUA)

        def load(url: str, size: int | Path, token: str, conns: int, seconds: float | None) -> Run:
            body = files[size] if isinstance(size, int) else size
            secs = args.seconds if seconds is None else seconds
            if use_wrk:
                return wrk(url, script, body, token, conns, args.wrk_threads, secs)
            return pyload(url, body, token, conns, secs)

        flags = limit_flags(env)
        b_port, p_port = free_port(), free_port()
        b_log, p_log = work / "bastion.log", work / "plain.log"
        b_cmd = [sys.executable, "-m", "bastion", "serve", MODEL, "--port", str(b_port)]
        b_cmd += ["--tls-self-signed", *flags]
        if args.on_extraction:
            b_cmd += ["--on-extraction", args.on_extraction]
        p_cmd = [sys.executable, str(ROOT / "benchmarks" / "plain_server.py")]
        p_cmd += ["--home", str(home), "--model", MODEL, "--port", str(p_port)]
        procs = []
        try:
            with b_log.open("wb") as out:
                procs.append(subprocess.Popen(b_cmd, env=env, stdout=out, stderr=out))
            with p_log.open("wb") as out:
                procs.append(subprocess.Popen(p_cmd, env=env, stdout=out, stderr=out))
            b_url, p_url = f"https://127.0.0.1:{b_port}", f"http://127.0.0.1:{p_port}"
            wait_up(b_url, procs[0], b_log)
            wait_up(p_url, procs[1], p_log)
            print(f"bastion: {' '.join(b_cmd[2:])}  (pid {procs[0].pid})")
            print(f"plain:   {' '.join(p_cmd[1:])}  (pid {procs[1].pid})")
            tool = f"wrk -t{args.wrk_threads}" if use_wrk else "python load generator (no wrk)"
            print(f"{tool}, {args.seconds:g} s per run, {os.cpu_count()} CPUs")
            print()
            sides = {
                "plain": (p_url + "/predict", ""),
                "bastion": (b_url + BASTION_PATH, consumer),
            }
            rows = []
            for label, size, conns in SCENARIOS:
                got: dict[str, Run] = {}
                for side, (url, token) in sides.items():
                    if args.warmup > 0:
                        load(url, size, token, conns, args.warmup)
                    got[side] = run = load(url, size, token, conns, args.seconds)
                    if run.non2xx:
                        print(f"{label}, {side}: {run.non2xx} non-2xx; now:", flush=True)
                        print("   ", probe(url, token, files[size]), flush=True)
                rows.append((label, got))
            print(server_figures(b_url))
        finally:
            for proc in procs:
                stop(proc)
        others: dict[str, dict[str, Run]] = {}
        if not args.smoke and not args.no_competitors:
            others = competitors(work, model, files, load)
        del model
        alarms = [ln for ln in b_log.read_text().splitlines() if "extraction alarm" in ln]
        print(f"extraction alarms in Bastion's log: {len(alarms)}")
        for line in alarms[:3]:
            print("   ", line)
        print()

    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    return report(rows, smoke=args.smoke, others=others, judged_others=not args.no_competitors)


def server_figures(url: str) -> str:
    """Means over the whole run from Bastion's own /metrics (loopback: no token needed)."""
    import httpx

    try:
        text = httpx.get(url + "/metrics", verify=False, timeout=10).text  # noqa: S501
    except httpx.HTTPError as exc:
        return f"/metrics unreadable: {exc}"
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.rpartition(" ")
            values[name] = float(value)

    def mean(name: str, scale: float = 1.0) -> float:
        count = values.get(f"{name}_count", 0.0)
        return values.get(f"{name}_sum", 0.0) / count * scale if count else float("nan")

    return (
        f"bastion /metrics, whole run: audit write {mean('bastion_audit_write_seconds', 1e3):.2f}"
        f" ms mean (submitted to durable), model call {mean('bastion_model_seconds', 1e3):.2f}"
        f" ms mean, {mean('bastion_batch_requests'):.1f} requests and"
        f" {mean('bastion_batch_rows'):.1f} rows per model call"
    )


def competitors(work: Path, model: Any, files: dict[int, Path], load: Any) -> dict[str, Any]:
    """mlflow and BentoML serving ``model``, loaded like the others; {} where none ran.
    Each side's Run per scenario of ``COMPETED``, or a string saying why it is missing."""
    import serving_competitors as sc

    print("competitors: installing mlflow and bentoml into", sc.VENV, "...", flush=True)
    began = time.monotonic()
    bin_dir, why = sc.install(work / "pip.log")
    if bin_dir is None:
        print("competitors: not measured:", why)
        return {"mlflow": why, "bentoml": why}
    print(f"competitors: ready in {time.monotonic() - began:.0f} s")
    labels = [str(c) for c in getattr(model, "classes_", ["<=50K", ">50K"])]
    if not all(isinstance(c, str) for c in getattr(model, "classes_", [])):
        labels = ["<=50K", ">50K"]
    sides, missing = sc.prepare(bin_dir, work, model, labels, (free_port(), free_port()))
    out: dict[str, Any] = {m.split(":", 1)[0]: m for m in missing}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env = {k: v for k, v in env.items() if not k.startswith("BASTION_")}
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])  # mlflow runs uvicorn
    for side in sides:
        logf = work / f"{side.name}.log"
        with logf.open("wb") as fh:
            proc = subprocess.Popen(side.cmd, cwd=side.cwd, env=env, stdout=fh, stderr=fh)
        try:
            wait_up(side.url, proc, logf, side.health)
            body = sc.rewrap(files[1], side.wrap, work / f"{side.name}-bodies-1.txt")
            got: dict[str, Run] = {}
            for label, _, conns in (s for s in SCENARIOS if s[0] in COMPETED):
                load(side.url, body, "", conns, 2)  # warm-up
                got[label] = load(side.url, body, "", conns, None)
            out[side.name] = got
        except SystemExit as exc:
            out[side.name] = f"did not serve: {str(exc)[-400:]}"
        finally:
            stop(proc)
    return out


def report(
    rows: list[tuple[str, dict[str, Run]]],
    *,
    smoke: bool = False,
    others: dict[str, Any] | None = None,
    judged_others: bool = True,
) -> int:
    head = f"{'scenario':<18} {'side':<8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non2xx':>7}"
    print(head)
    print("-" * len(head))
    failed = 0
    for label, got in rows:
        for side, r in got.items():
            bad = r.non2xx + r.errors
            print(f"{label:<18} {side:<8} {r.rps:>9.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {bad:>7}")
        b, p = got["bastion"], got["plain"]
        ratio = b.rps / p.rps if p.rps else float("inf")
        p99 = b.p99_ms / p.p99_ms if p.p99_ms else float("inf")
        p50 = b.p50_ms / p.p50_ms if p.p50_ms else float("inf")
        clean = b.non2xx + b.errors == 0 and p.non2xx + p.errors == 0
        floor = MIN_RPS.get(label, 0.0)
        if label.endswith("c=1"):
            ok = p50 <= P50_AT_C1 and clean
            goal = f"p50 {p50:.2f}x (goal <= {P50_AT_C1:.2f}x)"
        else:
            ok = ratio >= 1.0 and p99 <= 1.0 and b.rps >= floor and clean
            goal = f"throughput {ratio:.2f}x (goal >= 1.00x), p99 {p99:.2f}x (goal <= 1.00x)"
            if floor:
                goal += f", {b.rps:.0f} req/s (goal >= {floor:.0f})"
        failed += not ok
        note = "" if clean else "  (non-2xx or socket errors)"
        verdict = "not judged" if smoke else "PASS" if ok else "FAIL"
        print(f"{'':<18} ratio    {goal}: {verdict}{note}")
    print()
    failed += versus(rows, others or {}) if judged_others and not smoke else 0
    if smoke:
        bad = sum(r.non2xx + r.errors for _, got in rows for r in got.values())
        print("smoke: goals not judged" if not bad else f"FAIL: {bad} non-2xx or socket errors")
        return 0 if not bad else 1
    print("PASS" if not failed else f"FAIL ({failed} goals missed)")
    return 0 if not failed else 1


def versus(rows: list[tuple[str, dict[str, Run]]], others: dict[str, Any]) -> int:
    """Print Bastion against mlflow and BentoML; the number of missed goals."""
    if not others:
        return 0
    ours = dict(rows)
    missed = 0
    for name, got in others.items():
        if isinstance(got, str):
            print(f"{name}: not measured ({got}): goal >= {VERSUS:.0f}x missed")
            missed += 1
            continue
        for label, r in got.items():
            b = ours[label]["bastion"]
            ratio = b.rps / r.rps if r.rps else float("inf")
            clean = r.non2xx + r.errors == 0
            ok = ratio >= VERSUS and clean
            missed += not ok
            print(
                f"{label:<18} {name:<8} {r.rps:>9.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} "
                f"{r.non2xx + r.errors:>7}   Bastion {ratio:.2f}x (goal >= {VERSUS:.0f}x): "
                f"{'PASS' if ok else 'FAIL'}"
            )
    print()
    return missed


if __name__ == "__main__":
    sys.exit(main())
