"""Connection-level guards for ``bastion serve``: slow clients and connection floods.

uvicorn has a keep-alive timeout but no header-read timeout: a client that opens a
connection and sends its request headers a byte at a time (slowloris) holds the
connection, and a file descriptor, for as long as it likes. :func:`guarded_protocol`
returns uvicorn's httptools protocol (llhttp, in C) with two guards added:

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
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = [
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS_PER_CLIENT",
    "EVENT_LOOP",
    "bound_tls_handshake",
    "event_loop",
    "guarded_protocol",
]

DEFAULT_HEADER_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS_PER_CLIENT = 64

log = logging.getLogger("bastion.serving")


def _answer(status: bytes, message: str, *extra: bytes) -> bytes:
    """A whole HTTP/1.1 response that closes the connection, written before (or instead
    of) parsing a request, so it bypasses the parser."""
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

    uvicorn does not pass ``ssl_handshake_timeout``: asyncio reads this default when each
    connection is accepted, and :func:`event_loop`'s uvloop loop passes it itself.
    """
    if seconds <= 0:
        raise ValueError("the TLS handshake timeout must be positive")
    asyncio.constants.SSL_HANDSHAKE_TIMEOUT = seconds


def event_loop() -> asyncio.AbstractEventLoop:
    """The server's event loop (``uvicorn.Config(loop=EVENT_LOOP)``): uvloop's, whose TLS
    and socket I/O run in C (about a quarter less CPU per request than asyncio's here),
    with the TLS handshake bounded by :func:`bound_tls_handshake` like asyncio's."""
    import uvloop

    class _BoundedLoop(uvloop.Loop):
        async def create_server(  # type: ignore[override]
            self, *args: Any, **kwargs: Any
        ) -> asyncio.AbstractServer:
            if kwargs.get("ssl") is not None:
                kwargs.setdefault("ssl_handshake_timeout", asyncio.constants.SSL_HANDSHAKE_TIMEOUT)
            return await super().create_server(*args, **kwargs)

    return _BoundedLoop()


#: ``uvicorn.Config(loop=...)`` for :func:`event_loop`.
EVENT_LOOP = f"{__name__}:event_loop"


class _GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools (llhttp, C) protocol with the two guards; :func:`guarded_protocol`
    subclasses it with the bounds and its own connection counts."""

    _header_timeout: ClassVar[float]
    _max_per_client: ClassVar[int]
    _open_per_client: ClassVar[Counter[str]]
    _peer: str | None = None
    _header_timer: asyncio.TimerHandle | None = None

    def _idle(self) -> bool:
        """No request in flight on the connection: its next headers are awaited."""
        return self.cycle is None or self.cycle.response_complete

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

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self._idle():
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
        if self._idle() and not self.transport.is_closing():
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
    """uvicorn's httptools protocol with a header-read timeout and a per-address connection
    cap, for ``uvicorn.Config(http=...)``. Each call has its own connection counts."""
    if header_timeout <= 0:
        raise ValueError("header_timeout must be positive")
    if max_per_client < 1:
        raise ValueError("max_per_client must be at least 1")
    open_per_client: Counter[str] = Counter()

    class GuardedProtocol(_GuardedHttpToolsProtocol):
        _header_timeout = header_timeout
        _max_per_client = max_per_client
        _open_per_client = open_per_client

    GuardedProtocol.__qualname__ = GuardedProtocol.__name__
    return GuardedProtocol
