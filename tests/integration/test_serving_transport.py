"""Connection-level defenses of the real server (``bastion serve`` over TLS on loopback).

HSTS on every TLS response; a slowloris client (headers a byte at a time, or a TCP
connection that never starts its TLS handshake) is cut off after ``--header-timeout``; one
address cannot hold more than ``--max-connections-per-client`` connections open.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Home
from tests.integration.test_serving import (
    PREDICT,
    ROW,
    Server,
    ran,  # noqa: F401 - the module fixture: a copy of the session's Adult home
    start,
)

HSTS = "max-age=31536000; includeSubDomains"
TRICKLE_FOR = 40.0  # seconds a slow client keeps trickling if nobody cuts it off


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the development certificate; trust is not the point
    return ctx


def _connect(server: Server) -> ssl.SSLSocket:
    port = int(server.url.rsplit(":", 1)[1])
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    return _tls().wrap_socket(raw, server_hostname="localhost")


def _read_response(sock: socket.socket) -> bytes:
    """Everything up to the end of one response's body (small bodies with Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _get(sock: socket.socket, path: str = "/healthz") -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    return _read_response(sock)


@pytest.fixture(scope="module")
def slow_guard(ran: Home) -> Iterator[Server]:  # noqa: F811 - the imported fixture
    server = start(ran, "--header-timeout", "2", tls="--tls-self-signed")
    try:
        yield server
    finally:
        server.stop()


def test_every_tls_response_carries_hsts(ran: Home, slow_guard: Server) -> None:  # noqa: F811
    def headers(res: httpx.Response) -> str | None:
        return res.headers.get("strict-transport-security")

    with httpx.Client(verify=_tls(), timeout=30) as client:
        ok = client.post(
            slow_guard.url + PREDICT,
            json={"instances": [ROW]},
            headers={"Authorization": f"Bearer {ran.token}"},
        )
        assert ok.status_code == 200
        refused = client.post(slow_guard.url + PREDICT, json={"instances": [ROW]})
        assert refused.status_code == 401
        missing = client.get(slow_guard.url + "/nowhere")
        assert missing.status_code == 404
        health = client.get(slow_guard.url + "/healthz")
        assert health.status_code == 200
    assert [headers(r) for r in (ok, refused, missing, health)] == [HSTS] * 4


def test_slowloris_headers_are_cut_off_after_the_header_timeout(slow_guard: Server) -> None:
    sock = _connect(slow_guard)
    started = time.monotonic()
    request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 1000
    answer = b""
    sent = 0
    try:
        sock.settimeout(0.25)
        while time.monotonic() - started < TRICKLE_FOR:
            try:
                sock.send(request[sent % len(request) : sent % len(request) + 1])
                sent += 1
                chunk = sock.recv(4096)
            except TimeoutError:
                continue  # nothing from the server yet: keep trickling, a byte at a time
            except (ConnectionError, ssl.SSLError):
                break
            if not chunk:
                break  # closed by the server
            answer += chunk
    finally:
        cut_after = time.monotonic() - started
        sock.close()
    print(f"slow-header client cut off after {cut_after:.2f} s and {sent} bytes")
    assert cut_after < TRICKLE_FOR, "a client trickling headers was never disconnected"
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]


def test_a_connection_that_never_starts_tls_is_closed(slow_guard: Server) -> None:
    port = int(slow_guard.url.rsplit(":", 1)[1])
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=TRICKLE_FOR) as raw:
        try:
            got = raw.recv(1)  # no ClientHello is ever sent
        except TimeoutError:
            got = b"still open"
        except ConnectionError:
            got = b""
    print(f"silent TCP client closed after {time.monotonic() - started:.2f} s")
    assert got == b""


def test_connections_per_client_are_capped(ran: Home) -> None:  # noqa: F811
    server = start(ran, "--max-connections-per-client", "4", tls="--tls-self-signed")
    held: list[ssl.SSLSocket] = []
    try:
        for _ in range(4):
            sock = _connect(server)
            assert _get(sock).startswith(b"HTTP/1.1 200 ")  # open, kept alive, counted
            held.append(sock)
        fifth = _connect(server)
        refused = _read_response(fifth)
        fifth.close()
        assert refused.startswith(b"HTTP/1.1 503 "), refused[:80]
        assert b"too many connections" in refused
        assert _get(held[0]).startswith(b"HTTP/1.1 200 ")  # the ones held still work
        held.pop().close()
        deadline = time.monotonic() + 30
        while True:  # the server sees the close soon after; then a new one is let in
            again = _connect(server)
            answer = _get(again)
            again.close()
            if answer.startswith(b"HTTP/1.1 200 ") or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]
    finally:
        for sock in held:
            sock.close()
        server.stop()
