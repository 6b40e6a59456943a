"""An auditor verifies Bastion's evidence on their own machine, with no Bastion code.

The recipe in docs/verify-outside.md (mirrored in docs/verify_outside.py, which imports
only the standard library and ``cryptography``) checks exported statements' DSSE
signatures and an exported checkpoint's signed tree head against the exported public keys,
across a signing-key rotation; a tampered envelope, checkpoint or audit entry fails it.
"""

from __future__ import annotations

import ast
import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from tests.conftest import Home, run_cli

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "docs" / "verify_outside.py"
DOC = ROOT / "docs" / "verify-outside.md"
EXAMPLE = ROOT / "examples" / "adult-income" / "pipeline.yaml"

# Run the recipe with Bastion made unimportable: -I ignores PYTHONPATH and user site, and
# a finder refuses any ``bastion`` module, so an import of Bastion fails loudly.
_SANDBOX = """
import runpy, sys
class NoBastion:
    def find_spec(self, name, path=None, target=None):
        if name == "bastion" or name.startswith(("bastion.", "tests")):
            raise ImportError(f"the recipe may not import {name}")
sys.meta_path.insert(0, NoBastion())
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    assert not any(m == "bastion" or m.startswith("bastion.") for m in sys.modules)
"""


def recipe(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", "-c", _SANDBOX, str(RECIPE), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_recipe_imports_only_the_standard_library_and_cryptography() -> None:
    roots = set()
    for node in ast.walk(ast.parse(RECIPE.read_text())):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    assert roots - set(sys.stdlib_module_names) == {"cryptography"}


def test_doc_code_is_the_recipe_code() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 3
    script = RECIPE.read_text()
    for block in blocks:
        if "securesystemslib" in block:
            continue  # the optional library route, not part of the script
        assert block.strip() in script, f"docs/verify-outside.md drifted from the script:\n{block}"


def _export(home: Home, out: Path) -> dict[str, object]:
    env = home.env()
    res = run_cli(["keys", "export", "--public", "--format", "jwk"], env)
    assert res.code == 0, res.err
    (out / "keys.jwk.json").write_text(res.out)
    statements = []
    listed = run_cli(["statements", "list", "--json"], env)
    assert listed.code == 0, listed.err
    for row in listed.json()["statements"]:
        path = out / f"statement-{row['id'][:12]}.json"
        res = run_cli(["statements", "export", row["id"], "--out", str(path)], env)
        assert res.code == 0, res.err
        statements.append(path)
    res = run_cli(["audit", "checkpoint", "--export", str(out / "checkpoint.json")], env)
    assert res.code == 0, res.err
    res = run_cli(["audit", "show", "--limit", "10000", "--json"], env)
    assert res.code == 0, res.err
    (out / "entries.json").write_text(res.out)
    return {"statements": statements}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Home, Path, list[Path]]:
    from bastion import Workspace
    from tests.conftest import PASSPHRASE

    root = tmp_path_factory.mktemp("outside")
    ws, issued = Workspace.init(root / "home", PASSPHRASE, scrypt_log_n=14)
    ws.close()
    home = Home(root / "home", issued.token)
    res = run_cli(["run", str(EXAMPLE), "--json"], home.env(OMP_NUM_THREADS="1"), timeout=600)
    assert res.code == 0, res.err
    res = run_cli(["keys", "rotate", "--signing", "--json"], home.env())  # two keys to export
    assert res.code == 0, res.err
    out = root / "auditor"
    out.mkdir()
    found = _export(home, out)
    statements = found["statements"]
    assert isinstance(statements, list) and len(statements) >= 8
    return home, out, statements


def test_outside_verification_recipe(exported: tuple[Home, Path, list[Path]]) -> None:
    home, out, statements = exported
    keys = json.loads((out / "keys.jwk.json").read_text())["keys"]
    assert len(keys) == 2  # the rotated key still verifies what it signed
    args = ["--keys", out / "keys.jwk.json"]
    args += [a for s in statements for a in ("--statement", s)]
    args += ["--checkpoint", out / "checkpoint.json", "--entries", out / "entries.json"]
    res = recipe(*args, cwd=out)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("OK statement") == len(statements)
    assert "OK checkpoint" in res.stdout and "match the signed root" in res.stdout
    envelope = json.loads(statements[0].read_text())
    assert envelope["signatures"][0]["keyid"] == keys[0]["kid"]  # signed before rotation
    checkpoint = json.loads((out / "checkpoint.json").read_text())
    assert checkpoint["key_id"] == keys[1]["kid"]  # signed after it

    pem = run_cli(["keys", "export", "--public"], home.env())
    assert pem.code == 0, pem.err
    blocks = re.findall(r"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----\n", pem.out, re.S)
    assert len(blocks) == 2
    for block, jwk in zip(blocks, keys, strict=True):
        raw = load_pem_public_key(block.encode()).public_bytes_raw()  # type: ignore[union-attr]
        assert base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == jwk["x"]


def _tamper_payload(envelope: dict) -> dict:
    statement = json.loads(base64.b64decode(envelope["payload"]))
    digest = statement["subject"][0]["digest"]["sha256"]
    statement["subject"][0]["digest"]["sha256"] = ("0" if digest[0] != "0" else "1") + digest[1:]
    return {**envelope, "payload": base64.b64encode(json.dumps(statement).encode()).decode()}


def test_outside_verification_recipe_fails_on_tampering(
    exported: tuple[Home, Path, list[Path]], tmp_path: Path
) -> None:
    _home, out, statements = exported
    keys = out / "keys.jwk.json"
    envelope = json.loads(statements[0].read_text())
    cases: dict[str, tuple[str, object]] = {
        "payload": ("statement", _tamper_payload(envelope)),
        "payload-type": ("statement", {**envelope, "payloadType": "application/json"}),
        "no-signature": ("statement", {**envelope, "signatures": []}),
    }
    sig = envelope["signatures"][0]
    other = base64.b64decode(sig["sig"])
    other = bytes([other[0] ^ 1]) + other[1:]
    cases["signature"] = (
        "statement",
        {**envelope, "signatures": [{**sig, "sig": base64.b64encode(other).decode()}]},
    )
    checkpoint = json.loads((out / "checkpoint.json").read_text())
    cases["checkpoint-root"] = ("checkpoint", {**checkpoint, "root": "00" * 32})
    cases["checkpoint-size"] = ("checkpoint", {**checkpoint, "tree_size": 1})
    for name, (kind, doc) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc))
        if kind == "statement":
            res = recipe("--keys", keys, "--statement", path, cwd=tmp_path)
        else:
            res = recipe("--keys", keys, "--checkpoint", path, cwd=tmp_path)
        assert res.returncode == 1, (name, res.stdout, res.stderr)
        assert "FAILED" in res.stderr, (name, res.stderr)

    entries = json.loads((out / "entries.json").read_text())
    entries["entries"][2]["actor"] = "mallory"  # an edited audit entry before the checkpoint
    (tmp_path / "entries.json").write_text(json.dumps(entries))
    res = recipe(
        "--keys", keys, "--checkpoint", out / "checkpoint.json",
        "--entries", tmp_path / "entries.json", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 1 and "do not hash to the signed root" in res.stderr, res.stderr

    entries = json.loads((out / "entries.json").read_text())
    first, second = entries["entries"][-2], entries["entries"][-1]  # entries 1 and 2
    first["seq"], second["seq"] = second["seq"], first["seq"]  # reordered by relabelling
    (tmp_path / "entries.json").write_text(json.dumps(entries))
    res = recipe(
        "--keys", keys, "--checkpoint", out / "checkpoint.json",
        "--entries", tmp_path / "entries.json", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 1 and "do not hash to the signed root" in res.stderr, res.stderr

    only_new = json.loads(keys.read_text())
    only_new["keys"] = only_new["keys"][1:]  # the key that signed the statements, withheld
    (tmp_path / "new.jwk.json").write_text(json.dumps(only_new))
    res = recipe("--keys", tmp_path / "new.jwk.json", "--statement", statements[0], cwd=tmp_path)
    assert res.returncode == 1 and "no signature verifies" in res.stderr, res.stderr
