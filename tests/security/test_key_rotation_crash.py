"""Key rotation killed with SIGKILL at every step loses nothing, and a rerun finishes it.

A child process opens a copy of a populated home and rotates the keys; its progress
callback sends SIGKILL to itself at step k (k = 1 .. every step). The parent then checks
that every artifact still decrypts to the same bytes, that the store, statements and audit
log verify, and that a second rotation completes and retires every unused KEK. A last test
kills rotations at random moments (inside file writes too) from the parent.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import PASSPHRASE

CHILD = r"""
import os, signal, sys
from pathlib import Path
from bastion import Workspace

home, kill_at = Path(sys.argv[1]), int(sys.argv[2])
ws = Workspace.open(home, sys.argv[3], token=sys.argv[4])
count = 0

def step(name, done, total):
    global count
    count += 1
    if count == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

ws.rotate_keys(signing=True, progress=step)
ws.close()
print(count)
"""

PAYLOADS = [b"", b"x", os.urandom(3 * 1024 * 1024 + 17), b"adult,income\n" * 1000]


Template = tuple[Path, dict[str, bytes], str]  # home, payloads by digest, admin token


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    from bastion import Workspace

    root = tmp_path_factory.mktemp("rotation")
    ws, issued = Workspace.init(root / "home", PASSPHRASE, scrypt_log_n=14)
    digests = {}
    for i, data in enumerate(PAYLOADS):
        ref = ws.store.put(data, actor="admin", name=f"p{i}")
        ws.attest([(f"p{i}", ref.digest)], "https://example.org/test/v1", {"i": i})
        digests[ref.digest] = data
    ws.close()
    return root / "home", digests, issued.token


def _child(home: Path, kill_at: int, token: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(home), str(kill_at), PASSPHRASE, token],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )


def _check_nothing_lost(home: Path, digests: dict[str, bytes], token: str) -> None:
    from bastion import Workspace

    with Workspace.open(home, PASSPHRASE, token=token) as ws:
        for digest, data in digests.items():
            assert ws.store.read_bytes(digest) == data
            assert hashlib.sha256(data).hexdigest() == digest
        report = ws.verify()
        assert report.ok, report.problems
        assert report.artifacts == len(digests)


def _steps(template: Template, tmp_path: Path) -> int:
    home = tmp_path / "count"
    shutil.copytree(template[0], home)
    done = _child(home, 0, template[2])
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


def test_rotation_killed_at_every_step_loses_nothing(template: Template, tmp_path: Path) -> None:
    from bastion import Workspace

    total = _steps(template, tmp_path)
    assert total == 2 + len(PAYLOADS) + 1  # new KEK, new signing key, each blob, one retirement
    for kill_at in range(1, total + 1):
        home = tmp_path / f"k{kill_at}"
        shutil.copytree(template[0], home)
        killed = _child(home, kill_at, template[2])
        assert killed.returncode == -signal.SIGKILL, (kill_at, killed.stderr)
        _check_nothing_lost(home, template[1], template[2])
        with Workspace.open(home, PASSPHRASE, token=template[2]) as ws:  # a rerun finishes
            ws.rotate_keys()
            keks = [k for k in ws.keyring.keys() if k.kind == "kek"]
            assert [k.state for k in keks].count("active") == 1
            assert all(k.state in ("active", "retired") for k in keks)
            assert set(ws.store.key_ids_in_use()) == {ws.keyring.active_kek()}
        _check_nothing_lost(home, template[1], template[2])


def test_rotation_killed_at_random_moments_loses_nothing(
    template: Template, tmp_path: Path
) -> None:
    rng = random.Random(1234)
    for i in range(5):
        home = tmp_path / f"r{i}"
        shutil.copytree(template[0], home)
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(home), "0", PASSPHRASE, template[2]],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parents[2],
        )
        time.sleep(rng.uniform(0.3, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        _check_nothing_lost(home, template[1], template[2])
