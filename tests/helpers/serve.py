"""``bastion serve`` in a subprocess, read the way a person or a script reads it: the start
lines on stderr, or the one JSON line on stdout (``--json``); and real Adult rows to send."""

from __future__ import annotations

import json
import math
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tests.conftest import Home
from tests.helpers.adult import DATA


@dataclass
class Running:
    """A started server: its process, what it announced (``--json``), its stderr file."""

    proc: subprocess.Popen[str]
    stderr: Path
    announced: dict[str, Any]

    @property
    def url(self) -> str:
        return str(self.announced["url"])

    @property
    def log(self) -> str:
        return self.stderr.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def _first_line(stream: IO[str], timeout: float) -> str | None:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return None


def serve(home: Home, *args: str, json_out: bool = True, timeout: float = 90) -> Running:
    """``bastion serve adult-income --port 0 ARGS`` until it says it listens.

    With ``json_out`` the announcement is the JSON line on stdout; otherwise the stderr
    lines are waited for (``announced`` is then ``{"text": ...}``)."""
    stderr = home.path.parent / f"serve-{time.monotonic_ns()}.log"
    cmd = [sys.executable, "-m", "bastion", "serve", "adult-income", "--port", "0", *args]
    if json_out:
        cmd.append("--json")
    with stderr.open("w") as err:
        proc = subprocess.Popen(cmd, env=home.env(), stdout=subprocess.PIPE, stderr=err, text=True)
    running = Running(proc, stderr, {})
    if json_out:
        assert proc.stdout is not None
        line = _first_line(proc.stdout, timeout)
        if not line:
            running.stop()
            raise AssertionError(f"no JSON line from bastion serve: {running.log}")
        running.announced = json.loads(line)
        return running
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = running.log
        if "  health " in text:
            running.announced = {"text": text}
            return running
        if proc.poll() is not None:
            raise AssertionError(f"bastion serve exited {proc.returncode}: {text}")
        time.sleep(0.2)
    running.stop()
    raise AssertionError(f"bastion serve printed no start lines: {running.log}")


def adult_rows(n: int, *, columns: list[str] | None = None) -> list[dict[str, Any]]:
    """The first ``n`` rows of adult.data as JSON instances: every declared column but the
    label (or only ``columns``), nulls as JSON null."""
    import pandas as pd

    frame = pd.read_csv(DATA / "adult.data", skipinitialspace=True, na_values="?", nrows=n)
    frame = frame.drop(columns="Y")
    if columns is not None:
        frame = frame[columns]
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]
