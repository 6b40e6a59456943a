"""Connection-level guards for ``bastion serve``: slow clients and connection floods.

uvicorn has a keep-alive timeout but no header-read timeout: a client that opens a
connection and sends its request headers a byte at a time (slowloris) holds the
connection, and a file descriptor, for as long as it likes. :func:`guarded_protocol`
returns uvicorn's h11 protocol with two guards added:

- **header timeout**: the request line and headers must be complete within
  ``header_timeout`` seconds of the connection opening (and, on a kept-alive connection,
  of the previous response); otherwise the server answers ``408`` and closes it. The TLS
  handshake, which runs before the HTTP protocol sees the connection, gets the same bound
  (:func:`bound_tls_handshake`; asyncio's default is 60 s).
- **connections per client**: at most ``max_per_client`` open connections from one peer
  IP address; the next one gets ``503`` and is closed at once. The peer is the TCP peer:
  behind a reverse proxy every client is the proxy, so raise the bound there or enforce it
  in the proxy.

Both apply before the ASGI app runs, so a refused connection costs no authentication,
audit entry or model call. Request bodies are bounded by the app (size limit, deadline).
"""

from __future__ import annotations

import asyncio
import asyncio.constants
import logging
from collections import Counter
from typing import ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = [
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS_PER_CLIENT",
    "bound_tls_handshake",
    "guarded_protocol",
]

DEFAULT_HEADER_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS_PER_CLIENT = 64

log = logging.getLogger("bastion.serving")


def _answer(status: bytes, message: str, *extra: bytes) -> bytes:
    """A whole HTTP/1.1 response that closes the connection, written before (or instead
    of) parsing a request, so it bypasses h11."""
    body = b'{"error": "%s"}' % message.encode()
    head = [b"HTTP/1.1 " + status, b"content-type: application/json", *extra]
    head += [b"content-length: %d" % len(body), b"connection: close"]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


_TIMEOUT = _answer(b"408 Request Timeout", "request headers took too long")
_TOO_MANY = _answer(
    b"503 Service Unavailable", "too many connections from this address", b"retry-after: 1"
)


def bound_tls_handshake(seconds: float) -> None:
    """Make TLS handshakes that take longer than ``seconds`` fail (this process only).

    uvicorn does not pass asyncio's ``ssl_handshake_timeout``; asyncio reads this default
    when each connection is accepted.
    """
    if seconds <= 0:
        raise ValueError("the TLS handshake timeout must be positive")
    asyncio.constants.SSL_HANDSHAKE_TIMEOUT = seconds


class _GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the two guards; :func:`guarded_protocol` subclasses it
    with the bounds and its own connection counts."""

    _header_timeout: ClassVar[float]
    _max_per_client: ClassVar[int]
    _open_per_client: ClassVar[Counter[str]]
    _peer: str | None = None
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        peer = self.client[0] if self.client else "unknown"
        counts = self._open_per_client
        counts[peer] += 1
        self._peer = peer
        if counts[peer] > self._max_per_client:
            log.debug("refused a connection from %s: %d open", peer, counts[peer])
            self._refuse(_TOO_MANY)
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._peer is not None:
            counts = self._open_per_client
            counts[self._peer] -= 1
            if counts[self._peer] <= 0:
                del counts[self._peer]
            self._peer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the request's headers are in
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm()  # the next request on this connection gets the same bound

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self._header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._refuse(_TIMEOUT)

    def _refuse(self, answer: bytes) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(answer)
            self.transport.close()


def guarded_protocol(
    *,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    max_per_client: int = DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with a header-read timeout and a per-address connection cap,
    for ``uvicorn.Config(http=...)``. Each call has its own connection counts."""
    if header_timeout <= 0:
        raise ValueError("header_timeout must be positive")
    if max_per_client < 1:
        raise ValueError("max_per_client must be at least 1")
    open_per_client: Counter[str] = Counter()

    class GuardedH11Protocol(_GuardedH11Protocol):
        _header_timeout = header_timeout
        _max_per_client = max_per_client
        _open_per_client = open_per_client

    GuardedH11Protocol.__qualname__ = GuardedH11Protocol.__name__
    return GuardedH11Protocol
