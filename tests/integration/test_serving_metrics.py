"""``/metrics`` and ``/openapi.json`` on the real server (``bastion serve`` in a subprocess).

Beyond loopback ``/metrics`` needs a token with ``audit:read`` and ``/openapi.json`` any
valid token; from loopback both stay open. The metrics count what the controls did:
authentication failures, rate-limited requests by their code, audit write latency and
batch sizes. The server listens on every address and the client calls it at the
machine's own non-loopback address, so the server sees a non-loopback peer.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import PASSPHRASE, Home, copy_home
from tests.integration.test_serving import ROW, Server, _token, start

ADMIN_ROUTES = ("/metrics", "/openapi.json")


def own_address() -> str | None:
    """This machine's non-loopback IPv4 address, or None where it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: only the route is looked up
            address = str(s.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address  # noqa: S104


@pytest.fixture(scope="module")
def served(adult_home: Home, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server on 0.0.0.0 (TLS, self-signed) with a small rate limit, and its tokens."""
    address = own_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to call the server at")
    home = copy_home(adult_home, Path(tmp_path_factory.mktemp("metrics")) / "home")
    from bastion import Workspace

    with Workspace.open(home.path, PASSPHRASE, token=home.token) as ws:
        tokens = {
            "consumer": _token(ws, "svc-eater", "consumer", "deployment", "adult-income").token,
            "other": _token(ws, "svc-other", "consumer", "deployment", "other-model").token,
            "auditor": _token(ws, "svc-auditor", "auditor").token,
        }
    limits = ("--rate", "0.01", "--burst", "3")
    every = "0.0.0.0"  # noqa: S104 - the point: a peer that is not loopback
    srv = start(home, "--host", every, *limits, tls="--tls-self-signed")
    srv.tokens = tokens
    port = srv.url.rsplit(":", 1)[1]
    srv.remote = f"https://{address}:{port}"  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        srv.stop()


def get(url: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.get(url, headers=headers, verify=False, timeout=10)  # noqa: S501 (self-signed)


def value(text: str, sample: str) -> float:
    """The value of the exposition line that starts with ``sample`` (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("route", ADMIN_ROUTES)
def test_admin_routes_refuse_a_remote_caller_without_a_token(served: Server, route: str) -> None:
    remote = served.remote  # type: ignore[attr-defined]
    assert get(remote + route).status_code == 401
    assert get(remote + route, "bst_not_a_real_token").status_code == 401
    assert get(remote + route).headers["www-authenticate"].startswith("Bearer")


def test_metrics_beyond_loopback_need_audit_read(served: Server) -> None:
    remote = served.remote  # type: ignore[attr-defined]
    denied = get(remote + "/metrics", served.tokens["consumer"])
    assert denied.status_code == 403 and "bastion_" not in denied.text
    allowed = get(remote + "/metrics", served.tokens["auditor"])
    assert allowed.status_code == 200 and "bastion_requests_total" in allowed.text
    assert allowed.headers["content-type"].startswith("text/plain")


def test_openapi_beyond_loopback_needs_any_valid_token(served: Server) -> None:
    remote = served.remote  # type: ignore[attr-defined]
    doc = get(remote + "/openapi.json", served.tokens["consumer"])
    assert doc.status_code == 200 and doc.json()["openapi"] == "3.1.0"


@pytest.mark.parametrize("route", ADMIN_ROUTES)
def test_admin_routes_stay_open_on_loopback(served: Server, route: str) -> None:
    assert get(served.url + route).status_code == 200


def test_metrics_count_auth_failures_rate_limits_audit_writes_and_batches(
    served: Server,
) -> None:
    before = get(served.url + "/metrics").text
    remote = served.remote  # type: ignore[attr-defined]

    def post(token: str | None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        res = httpx.post(
            remote + "/v1/models/adult-income/predict",
            json={"instances": [ROW]},
            headers=headers,
            verify=False,  # noqa: S501 (self-signed, test only)
            timeout=30,
        )
        return res.status_code

    assert post(None) == 401
    assert post("bst_forged_token") == 401
    assert post(served.tokens["other"]) == 403  # a valid token for another deployment
    codes = [post(served.tokens["consumer"]) for _ in range(5)]
    assert codes[:3] == [200] * 3 and codes[3:] == [429, 429]  # burst 3, refill 1 per 100 s
    get(remote + "/metrics", served.tokens["consumer"])  # 403 on an admin route
    after = get(served.url + "/metrics").text

    def grew(sample: str) -> float:
        return value(after, sample) - value(before, sample)

    failures = "bastion_auth_failures_total"
    assert grew(failures + '{reason="unauthenticated",route="predict"}') == 2
    assert grew(failures + '{reason="forbidden",route="predict"}') == 1
    assert grew(failures + '{reason="forbidden",route="admin"}') == 1
    assert grew('bastion_rate_limited_total{reason="RATE_LIMITED"}') == 2
    # one audit entry per predict request, each timed from submitted to durable
    assert grew("bastion_audit_write_seconds_count") == 8
    assert grew("bastion_audit_write_seconds_sum") > 0
    # three requests passed the controls; each model call's size is observed
    assert grew("bastion_batch_rows_sum") == 3
    assert 1 <= grew("bastion_batch_requests_count") <= 3
    assert grew('bastion_requests_total{deployment="adult-income",status="429"}') == 2
    # no metric names a principal or carries a token
    assert "svc-eater" not in after and "bst_" not in after
