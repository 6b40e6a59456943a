"""tests.helpers.required: CI never skips a control for want of a switch."""

from __future__ import annotations

import pytest

from tests.helpers.required import required


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, False),
        ({"BASTION_REQUIRE_BROWSER": "1"}, True),
        ({"BASTION_REQUIRE_BROWSER": "0"}, False),
        ({"CI": "true"}, True),
        ({"CI": "1"}, True),
        ({"CI": "false"}, False),
        ({"CI": ""}, False),
    ],
)
def test_required_on_its_switch_or_on_ci(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: bool
) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("BASTION_REQUIRE_BROWSER", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert required("BROWSER") is expected
