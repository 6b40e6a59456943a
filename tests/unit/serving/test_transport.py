"""The connection guards on the server's HTTP protocol (uvicorn's httptools), in a real
uvicorn server on loopback: a slow request's headers get 408, a complete request is
answered and its kept-alive connection gets the same bound, a flood from one address 503."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from bastion.serving.transport import EVENT_LOOP, guarded_protocol


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def server() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop=EVENT_LOOP,
        lifespan="off",
        log_level="warning",
        http=guarded_protocol(header_timeout=0.3, max_per_client=3),
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield port
    srv.should_exit = True
    thread.join(10)


def _read(sock: socket.socket) -> bytes:
    sock.settimeout(3)
    out = b""
    try:
        while chunk := sock.recv(4096):
            out += chunk
            if b"\r\n\r\n" in out and (out.endswith(b"ok") or b"connection: close" in out):
                break
    except TimeoutError:
        pass
    return out


def test_headers_that_never_complete_get_408(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never the blank line
        began = time.monotonic()
        answer = _read(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert time.monotonic() - began < 2


def test_a_kept_alive_connection_gets_the_same_bound(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET / HTTP/1.1\r\n")  # the next request stalls
        assert _read(sock).startswith(b"HTTP/1.1 408")


def test_connections_beyond_the_cap_get_503(server: int) -> None:
    held = [socket.create_connection(("127.0.0.1", server)) for _ in range(3)]
    try:
        time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", server)) as extra:
            assert _read(extra).startswith(b"HTTP/1.1 503")
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize(("timeout", "cap"), [(0.0, 3), (-1.0, 3), (1.0, 0)])
def test_bad_bounds_are_refused(timeout: float, cap: int) -> None:
    with pytest.raises(ValueError, match=r"positive|at least 1"):
        guarded_protocol(header_timeout=timeout, max_per_client=cap)
