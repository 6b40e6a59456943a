"""The README's first request runs as written, so the README cannot drift from the server.

The ``$ curl`` command of the README's Serving section (with its continuation lines) runs
in bash, from the folder that holds the home as ``.bastion``, against a real
``bastion serve adult-income --tls-self-signed`` started from the session's Adult home
(a copy). The only change made to it is the port: the server takes a free one
(``--port 0``) instead of 8443. ``$CONSUMER`` is made by the README's own ``export`` line
when ``jq`` is installed, else by ``bastion token create`` as that line says. Without curl,
the command is parsed and the same request is sent with httpx.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Home, copy_home, run_cli
from tests.helpers.serve import Running, serve

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def serving_section() -> str:
    text = README.read_text()
    start = text.index("\n## Serving\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def command(section: str, first_word: str) -> str:
    """The ``$ first_word ...`` command of the section, continuation lines joined."""
    lines = section.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"$ {first_word} "):
            parts = [line[2:]]
            while parts[-1].endswith("\\"):
                parts[-1] = parts[-1][:-1]
                i += 1
                parts.append(lines[i].strip())
            return " ".join(p.strip() for p in parts)
    raise AssertionError(f"README's Serving section has no '$ {first_word}' command")


@pytest.fixture(scope="module")
def project(adult_home: Home, tmp_path_factory: pytest.TempPathFactory) -> Home:
    """A project folder with the home at ``./.bastion``, as the Quick start makes it."""
    return copy_home(adult_home, tmp_path_factory.mktemp("readme") / ".bastion")


@pytest.fixture(scope="module")
def server(project: Home) -> Iterator[Running]:
    running = serve(project, "--tls-self-signed")
    try:
        yield running
    finally:
        running.stop()


def _env(project: Home) -> dict[str, str]:
    env = project.env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_the_readme_curl_line_answers_with_a_label(project: Home, server: Running) -> None:
    section = serving_section()
    curl = command(section, "curl")
    export = command(section, "export")
    assert "..." not in curl and "…" not in curl
    assert "https://127.0.0.1:8443/v1/models/adult-income/predict" in curl
    curl = curl.replace("https://127.0.0.1:8443", server.url)
    cwd = project.path.parent  # where ./.bastion is
    env = _env(project)
    if shutil.which("jq") and shutil.which("curl"):
        done = subprocess.run(
            ["bash", "-c", f"set -eo pipefail; {export}; {curl} --fail-with-body --silent"],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        answer = json.loads(done.stdout)
    else:
        created = run_cli(
            ["token", "create", "--role", "consumer", "--deployment", "adult-income", "--json"],
            env,
        )
        assert created.code == 0, created.err
        answer = _send(curl, cwd, created.json()["token"])
    assert answer["model"] == "adult-income:1"
    assert answer["predictions"] in (["<=50K"], [">50K"])
    # the body the README shows is the model's inputs, no more and no less
    body = json.loads(re.search(r"-d '([^']*)'", curl).group(1))  # type: ignore[union-attr]
    names = [i["name"] for i in server.announced["models"][0]["inputs"]]
    assert sorted(body["instances"][0]) == sorted(names)


def _send(curl: str, cwd: Path, token: str) -> dict[str, object]:
    """The README's curl command, parsed and sent with httpx (no curl on this machine)."""
    args = shlex.split(curl.replace("$CONSUMER", token))
    assert args[0] == "curl"
    headers: dict[str, str] = {}
    cacert = data = url = None
    it = iter(args[1:])
    for arg in it:
        if arg == "--cacert":
            cacert = str(cwd / next(it))
        elif arg == "-H":
            name, _, value = next(it).partition(":")
            headers[name.strip()] = value.strip()
        elif arg == "-d":
            data = next(it)
        else:
            url = arg
    assert cacert and data and url, args
    res = httpx.post(
        url,
        content=data.encode(),
        headers=headers,
        verify=ssl.create_default_context(cafile=cacert),
        timeout=30,
    )
    assert res.status_code == 200, res.text
    return dict(res.json())
