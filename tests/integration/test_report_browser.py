"""The run report and the model card, opened in a real headless Chromium (Debian's
``chromium``, driven by Playwright) from the session's Adult home: every image must load
under the page's own Content-Security-Policy, and the console must stay free of errors.

A full-page screenshot of each page is kept (its folder is printed; with
``BASTION_TEST_ARTIFACTS`` set, it is copied there too). Without Chromium or Playwright
the test skips with the reason, unless ``BASTION_REQUIRE_BROWSER=1`` (CI), where that is a
failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Home
from tests.helpers.required import required

CHROMIUM = Path(os.environ.get("BASTION_TEST_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
# Runs before the page's own content (outside its CSP): collects each CSP violation.
_WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI);
});
"""
_BROKEN_IMAGES = """
Array.from(document.images)
  .filter((img) => !img.complete || img.naturalWidth === 0)
  .map((img) => (img.alt || '?') + ' <' + img.getAttribute('src').slice(0, 40) + '>')
"""


def _unavailable(reason: str) -> None:
    if required("BROWSER"):
        pytest.fail(f"a browser is required (BASTION_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright, headless, with a fresh profile."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.is_file():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots are kept (printed; copied to BASTION_TEST_ARTIFACTS if set)."""
    folder = tmp_path_factory.mktemp("report-screenshots")
    print(f"report screenshots: {folder}")
    return folder


def _report_dir(home: Home) -> Path:
    reports = sorted(home.path.glob("reports/*/report.html"))
    assert len(reports) == 1, f"expected one run report in {home.path}, found {reports}"
    return reports[0].parent


def _open(browser: Any, page_file: Path, shot: Path) -> dict[str, Any]:
    """Load ``page_file`` from disk; return its console errors, CSP violations, page
    errors, broken images and image count, after saving a full-page screenshot."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.add_init_script(_WATCH_CSP)
        console: list[str] = []
        errors: list[str] = []
        page.on(
            "console",
            lambda msg: (
                console.append(f"{msg.type}: {msg.text}")
                if msg.type in ("error", "warning")
                else None
            ),
        )
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(page_file.as_uri(), wait_until="load")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(shot), full_page=True)
        found = {
            "console": console,
            "page_errors": errors,
            "csp": page.evaluate("window.__cspViolations"),
            "broken": page.evaluate(_BROKEN_IMAGES),
            "images": page.evaluate("document.images.length"),
        }
    finally:
        context.close()
    artifacts = os.environ.get("BASTION_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, Path(artifacts) / shot.name)
    return found


def _assert_clean(found: dict[str, Any], what: str) -> None:
    assert found["csp"] == [], f"{what}: CSP violations {found['csp']}"
    assert found["broken"] == [], f"{what}: broken images {found['broken']}"
    assert found["console"] == [], f"{what}: console errors/warnings {found['console']}"
    assert found["page_errors"] == [], f"{what}: page errors {found['page_errors']}"


def test_run_report_shows_every_image_under_its_own_csp(
    adult_home: Home, browser: Any, shots: Path
) -> None:
    report = _report_dir(adult_home) / "report.html"
    found = _open(browser, report, shots / "report.png")
    _assert_clean(found, str(report))
    # ROC, calibration, confusion, selection rate and the poisoning screen of `train`
    assert found["images"] >= 5, f"{report}: only {found['images']} image(s)"
    assert (shots / "report.png").stat().st_size > 10_000


def test_model_card_renders_cleanly(adult_home: Home, browser: Any, shots: Path) -> None:
    card = _report_dir(adult_home) / "model_card.html"
    found = _open(browser, card, shots / "model_card.png")
    _assert_clean(found, str(card))
    assert (shots / "model_card.png").stat().st_size > 10_000
