"""Files in the home: private whatever the umask, and the database stays inside the home.

Attacks: another local user reads the database, its WAL or a report (they were 0644 under
the usual umask 0022); a ``?`` or ``#`` in the home's path made the SQLite URL end early and
put the database outside the home.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PASSPHRASE, Home, run_cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "adult-income" / "pipeline.yaml"


@pytest.fixture
def umask_0022() -> Iterator[None]:
    old = os.umask(0o022)  # the usual default: new files 0644, folders 0755
    try:
        yield
    finally:
        os.umask(old)


def _modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def _loose(root: Path) -> dict[str, str]:
    bad = {}
    for rel, mode in _modes(root).items():
        want = 0o700 if (root / rel).is_dir() else 0o600
        if mode != want:
            bad[rel] = f"{mode:04o}"
    return bad


def test_home_files_and_folders_are_private(umask_0022: None, tmp_path: Path) -> None:
    from bastion import Workspace
    from bastion.serving.tls import self_signed

    res = run_cli(
        ["init", "--scrypt-log-n", "14", "--json"],
        {**Home(tmp_path / "home", "").env(), "BASTION_TOKEN": ""},
    )
    assert res.code == 0, res.err
    home = Home(tmp_path / "home", res.json()["token"])
    env = {**home.env(), "OMP_NUM_THREADS": "1"}
    res = run_cli(["run", str(EXAMPLE), "--json"], env, timeout=600)
    assert res.code == 0, res.err
    (tmp_path / "rows.csv").write_text("a,b\n1,2\n")
    res = run_cli(["artifact", "put", str(tmp_path / "rows.csv"), "--media-type", "text/csv"], env)
    assert res.code == 0, res.err
    self_signed(home.path / "tls")  # what `bastion serve --tls-self-signed` makes

    ws = Workspace.open(home.path, PASSPHRASE, token=home.token)
    try:
        ws.verify()  # reads through the open connection: the WAL and its index exist now
        names = set(_modes(home.path))
        assert {"bastion.db", "bastion.db-wal", "bastion.db-shm"} <= names
        assert any(n.startswith("reports/") and n.endswith("report.html") for n in names)
        assert any(n.startswith("reports/.plots/") for n in names)
        assert {"tls/localhost.crt", "tls/localhost.key", "keyring.json"} <= names
        assert any(n.startswith("objects/") for n in names)
        assert _loose(home.path) == {}
    finally:
        ws.close()
    assert _loose(home.path) == {}

    res = run_cli(["verify", "--json"], env)
    assert res.code == 0, res.out + res.err
    assert not [p for p in res.json()["problems"] if p["kind"] == "file"]


def test_verify_reports_a_loose_file_or_folder_mode(home: Home) -> None:
    os.chmod(home.path / "keyring.json", 0o644)
    os.chmod(home.path / "objects", 0o755)  # noqa: S103 - the attack under test
    res = run_cli(["verify", "--json"], home.env())
    assert res.code == 1, res.out + res.err
    problems = {p["subject"]: p["message"] for p in res.json()["problems"] if p["kind"] == "file"}
    assert problems == {
        str(home.path / "keyring.json"): "file mode 0644; expected 0600",
        str(home.path / "objects"): "folder mode 0755; expected 0700",
    }


@pytest.mark.parametrize("name", ["a?b#c", "x%3Fy z", "q?mode=memory&cache=shared"])
def test_question_mark_in_home_path_keeps_database_inside(tmp_path: Path, name: str) -> None:
    parent = tmp_path / "tmp"
    parent.mkdir()
    where = parent / name
    env = {**Home(where, "").env(), "BASTION_TOKEN": ""}
    res = run_cli(["init", "--scrypt-log-n", "14", "--json"], env)
    assert res.code == 0, res.err
    assert sorted(p.name for p in parent.iterdir()) == [name]  # nothing made beside the home
    assert (where / "bastion.db").is_file()
    assert (where / "bastion.db").stat().st_size > 0
    env["BASTION_TOKEN"] = res.json()["token"]
    res = run_cli(["audit", "verify", "--json"], env)  # reopens the same database
    assert res.code == 0, res.out + res.err
    assert res.json()["entries"] >= 4
    assert sorted(p.name for p in parent.iterdir()) == [name]
