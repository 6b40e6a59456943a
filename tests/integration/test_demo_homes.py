"""The two demos each keep their own home, and a secrets file that no longer opens its
home is caught with a message that says what to do (issue 12, item 1).

The real scripts run in a temporary copy of the repository's ``examples`` folder, with
their default homes (``.bastion-demo`` and ``.bastion-demo-core``), through the real CLI.
The copy's Adult data is the first rows of each file (pins and gates set for them) so that
the pipeline runs in seconds; the scripts are the repository's own, byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
ROWS = {"adult.data": 2500, "adult.test": 1200}

pytestmark = pytest.mark.slow


@dataclass
class Demo:
    code: int
    out: str
    err: str


def _sample(repo: Path) -> None:
    """``repo/examples``: the scripts as they are, the Adult data cut to its first rows."""
    adult = repo / "examples" / "adult-income"
    (adult / "data").mkdir(parents=True)
    shutil.copy2(EXAMPLES / "secure-core-demo.sh", repo / "examples")
    shutil.copy2(EXAMPLES / "adult-income" / "demo.sh", adult)
    pins: dict[str, str] = {}
    for name, rows in ROWS.items():
        lines = (EXAMPLES / "adult-income" / "data" / name).read_bytes().splitlines(True)
        data = b"".join(lines[: rows + 1])  # the header and the first rows
        (adult / "data" / name).write_bytes(data)
        pins[f"data/{name}"] = hashlib.sha256(data).hexdigest()
    doc = yaml.safe_load((EXAMPLES / "adult-income" / "pipeline.yaml").read_text())
    for source in doc["data"]["sources"].values():
        source["sha256"] = pins[source["path"]]
    doc["evaluate"]["gates"] = {"min_accuracy": 0.6, "min_roc_auc": 0.6}
    # the audits run as in the real demo; only robustness's bar is for the full data set
    doc["audits"]["robustness"]["gates"] = {"min_robust_accuracy": 0.6}
    (adult / "pipeline.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def _demo(repo: Path, script: str, **env: str) -> Demo:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    base["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}"
    base["BASTION_THREADS"] = os.environ.get("BASTION_THREADS", "1")
    proc = subprocess.run(
        ["bash", str(repo / "examples" / script)],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return Demo(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy where the Adult demo ran once (its home and secrets made), then the core demo."""
    repo = tmp_path_factory.mktemp("repo")
    _sample(repo)
    first = _demo(repo, "adult-income/demo.sh")
    assert first.code == 0, first.out + first.err
    assert "demo home created" in first.out
    core = _demo(repo, "secure-core-demo.sh")
    assert core.code == 0, core.out + core.err
    return repo


def test_the_core_demo_keeps_out_of_the_main_demos_home(repo: Path) -> None:
    for name in (".bastion-demo", ".bastion-demo-core"):
        assert (repo / name / "home.json").is_file(), name
        assert (repo / f"{name}.env").is_file(), name
        assert (repo / f"{name}.env").stat().st_mode & 0o077 == 0, name
    assert not (repo / ".bastion-demo-core-tampered").exists()
    again = _demo(repo, "adult-income/demo.sh")
    assert again.code == 0, again.out + again.err
    assert "demo home created" not in again.out  # the same home, opened with its secrets
    assert "all verified" in again.out


def test_the_adult_demo_summary_prints_whole_absolute_paths(repo: Path) -> None:
    done = _demo(repo, "adult-income/demo.sh", COLUMNS="40")
    assert done.code == 0, done.out + done.err
    reports = (repo / ".bastion-demo" / "reports").resolve()
    lines = done.out.splitlines()
    for label, filename in [
        ("report (HTML)", "report.html"),
        ("report (JSON)", "report.json"),
        ("model card (HTML)", "model_card.html"),
    ]:
        (line,) = [x for x in lines if x.startswith(f"{label}: ")]
        path = Path(line.removeprefix(f"{label}: "))
        assert path.is_absolute() and path.is_file() and path.name == filename
        assert path.parent.parent == reports


@pytest.fixture
def copy(repo: Path, tmp_path: Path) -> Path:
    """A copy of the repo after both demos, for a test that breaks its demo homes."""
    dest = tmp_path / "repo"
    shutil.copytree(repo, dest, symlinks=True)
    return dest


def test_a_secrets_file_from_another_home_is_caught_and_says_what_to_do(copy: Path) -> None:
    """The old failure: a home remade by the other demo, the secrets file left over."""
    shutil.rmtree(copy / ".bastion-demo")
    shutil.copytree(copy / ".bastion-demo-core", copy / ".bastion-demo")
    before = (copy / ".bastion-demo.env").read_bytes()
    done = _demo(copy, "adult-income/demo.sh")
    assert done.code == 2
    home, secrets = copy / ".bastion-demo", copy / ".bastion-demo.env"
    assert f"the demo home {home} does not open" in done.err
    assert "wrong passphrase or damaged keyring" in done.err
    assert f"rm -rf '{home}' '{secrets}'" in done.err
    assert "set BASTION_MASTER_KEY" in done.err
    assert "Traceback" not in done.err
    assert secrets.read_bytes() == before  # nothing changed
    assert "bastion run" not in done.out


def test_a_home_without_its_secrets_file_is_caught(copy: Path) -> None:
    (copy / ".bastion-demo.env").unlink()
    done = _demo(copy, "adult-income/demo.sh")
    assert done.code == 2
    assert f"has no secrets file {copy / '.bastion-demo.env'}" in done.err
    assert f"rm -rf '{copy / '.bastion-demo'}'" in done.err
    assert (copy / ".bastion-demo" / "home.json").is_file()


def test_a_secrets_file_without_its_home_is_caught(copy: Path) -> None:
    shutil.rmtree(copy / ".bastion-demo")
    done = _demo(copy, "adult-income/demo.sh")
    assert done.code == 2
    assert f"the secrets file {copy / '.bastion-demo.env'} has no demo home" in done.err
    assert f"rm '{copy / '.bastion-demo.env'}'" in done.err
    assert not (copy / ".bastion-demo").exists()


def test_the_secrets_in_the_environment_are_checked_too(copy: Path) -> None:
    wrong = {"BASTION_MASTER_KEY": "not the passphrase of it", "BASTION_TOKEN": "bst_x"}
    done = _demo(copy, "adult-income/demo.sh", **wrong)
    assert done.code == 2
    assert "BASTION_MASTER_KEY and BASTION_TOKEN from your environment" in done.err
