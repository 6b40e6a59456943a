"""The documentation site builds with ``mkdocs build --strict`` and stays true to the code.

Skipped with a reason when mkdocs is not installed (the ``docs`` extra); a failure instead
when ``BASTION_REQUIRE_DOCS=1`` (CI sets it). The CLI reference must list every command of
the live click tree, so a command added without appearing in the docs fails here; the
how-to's example pipeline file must load.
"""

from __future__ import annotations

import hashlib
import html
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Home, run_cli
from tests.helpers.required import required

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "loan-default"

needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None and not required("DOCS"),
    reason="mkdocs is not installed (pip install -e '.[docs]'); BASTION_REQUIRE_DOCS=1 fails",
)


def command_paths() -> list[str]:
    """Every command of the live tree, as typed: ``bastion``, ``bastion keys rotate``, ..."""
    import typer

    from bastion.cli.app import app

    paths: list[str] = []

    def walk(command: object, path: str) -> None:
        if getattr(command, "hidden", False):
            return
        paths.append(path)
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "bastion")
    return paths


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def _headings(page: Path) -> set[str]:
    text = page.read_text(encoding="utf-8")
    found = re.findall(r"<h[1-6][^>]*>(.*?)</h[1-6]>", text, flags=re.DOTALL)
    found = [re.sub(r'<a class="headerlink".*?</a>', "", h) for h in found]  # the ¶ links
    return {html.unescape(re.sub(r"<[^>]+>", "", h)).strip() for h in found}


@needs_mkdocs
def test_every_cli_command_has_a_section_in_the_reference(site: Path) -> None:
    headings = _headings(site / "reference" / "cli" / "index.html")
    paths = command_paths()
    assert len(paths) > 20, paths  # the tree really was walked
    missing = [p for p in paths if p not in headings]
    assert not missing, f"commands missing from the CLI reference page: {missing}"


@needs_mkdocs
def test_pipeline_schema_page_lists_every_key(site: Path) -> None:
    import bastion

    sys.path.insert(0, str(ROOT / "docs" / "hooks"))
    try:
        from reference import schema_rows  # the hook that writes the page
    finally:
        sys.path.remove(str(ROOT / "docs" / "hooks"))
    page = (site / "reference" / "pipeline-schema" / "index.html").read_text(encoding="utf-8")
    keys = [row[0] for row in schema_rows(bastion.pipeline_schema())]
    for key in ("name", "data.sources.<name>.sha256", "data.pii.<name>.policy", "release.name"):
        assert key in keys
    missing = [k for k in keys if f"<code>{html.escape(k, quote=False)}</code>" not in page]
    assert not missing, f"keys missing from the schema page: {missing}"


@needs_mkdocs
def test_api_reference_renders_public_names_from_docstrings(site: Path) -> None:
    page = (site / "reference" / "api" / "workspace" / "index.html").read_text(encoding="utf-8")
    assert 'id="bastion.workspace.Workspace"' in page
    assert 'id="bastion.workspace.Workspace.open"' in page
    assert "One home, opened as one authenticated principal" in page
    # Sphinx roles are rewritten to code, not left as text
    assert ":meth:" not in page and ":class:" not in page


@needs_mkdocs
def test_tutorial_includes_the_real_pipeline_file(site: Path) -> None:
    page = (site / "tutorial" / "index.html").read_text(encoding="utf-8")
    pipeline = (ROOT / "examples" / "adult-income" / "pipeline.yaml").read_text(encoding="utf-8")
    pin = re.search(r"sha256: ([0-9a-f]{64})", pipeline)
    assert pin is not None and pin.group(1) in page
    assert "--8&lt;--" not in page and "--8<--" not in page  # every snippet was expanded


def test_how_to_example_pipeline_loads_and_its_pin_matches() -> None:
    from bastion import Pipeline

    pipeline = Pipeline.from_yaml(EXAMPLE / "pipeline.yaml")
    assert pipeline.config.name == "loan-default"
    digest = hashlib.sha256((EXAMPLE / "data" / "loans.csv").read_bytes()).hexdigest()
    assert pipeline.config.data.sources["train"].sha256 == digest


def test_how_to_example_data_is_what_its_generator_writes(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_loans", EXAMPLE / "make_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    digest = module.write(tmp_path / "loans.csv")
    assert (tmp_path / "loans.csv").read_bytes() == (EXAMPLE / "data" / "loans.csv").read_bytes()
    assert digest == hashlib.sha256((EXAMPLE / "data" / "loans.csv").read_bytes()).hexdigest()


def test_how_to_commands_check_then_run_and_release_the_example(home: Home) -> None:
    """The how-to's two commands, as it shows them: the check finds nothing, the run passes
    its gates and releases the model, with age binned as declared."""
    check = run_cli(
        ["data", "check", "examples/loan-default/data/loans.csv", "--pipeline",
         "examples/loan-default/pipeline.yaml"],
        home.env(),
        cwd=ROOT,
    )  # fmt: skip
    assert check.code == 0, check.err
    assert "0 violation(s)" in " ".join(check.out.split())
    run = run_cli(
        ["run", "examples/loan-default/pipeline.yaml", "--json"],
        home.env(BASTION_THREADS="1"),
        cwd=ROOT,
        timeout=300,
    )
    assert run.code == 0, run.err
    assert run.json()["model"] == "loan-default:1"
    report = json.loads(Path(run.json()["report"]).with_name("report.json").read_text())
    age = report["metrics"]["groups"]["age"]
    assert age["binning"] == {"method": "declared", "edges": [25, 45, 65]}
    assert [g["group"] for g in age["groups"]] == ["<25", "[25, 45)", "[45, 65)", ">=65"]
