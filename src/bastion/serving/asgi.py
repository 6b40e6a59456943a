"""ASGI plumbing for the server: the types, reading a bounded body, writing a JSON answer.

No framework: the server is a plain ASGI callable (:class:`~bastion.serving.app.ServerApp`),
so these few helpers are all the HTTP it needs. Every answer carries ``Cache-Control:
no-store`` and ``X-Content-Type-Options: nosniff``; a client that went away while the answer
is written is not an error (the audit entry is already durable by then).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import orjson

from bastion.serving.requests import RequestRefused

__all__ = [
    "CHALLENGE",
    "PREDICT_PREFIX",
    "PREDICT_SUFFIX",
    "ClientGone",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "audit_name",
    "header",
    "read_body",
    "respond",
    "send_body",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: ``POST {PREDICT_PREFIX}{deployment}{PREDICT_SUFFIX}``
PREDICT_PREFIX, PREDICT_SUFFIX = "/v1/models/", "/predict"
#: The header of every 401 answer.
CHALLENGE = [(b"www-authenticate", b'Bearer realm="bastion"')]

_SAFE_NAME = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")
_BASE_HEADERS = [
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
]


class ClientGone(Exception):
    """The client disconnected before its body arrived."""


def audit_name(name: str) -> str:
    """A deployment name fit for the audit log (attacker-chosen paths are not)."""
    if 0 < len(name) <= 64 and _SAFE_NAME.issuperset(name):
        return name
    return "<invalid>"


def header(scope: Scope, wanted: bytes) -> bytes | None:
    """The first value of the (lower-case) header ``wanted``, or None."""
    for key, value in scope["headers"]:
        if key == wanted:
            return bytes(value)
    return None


def _too_large(limit: int) -> str:
    return f"body: larger than {limit} bytes (the server's --max-body; --max-body raises it)"


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body, refused (413) as soon as it grows past ``limit`` bytes."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestRefused(413, _too_large(limit), decision="too_large")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestRefused(413, _too_large(limit), decision="too_large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def respond(
    send: Send, status: int, payload: Any, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """Answer ``payload`` as JSON with ``status`` and the extra headers."""
    await send_body(send, status, orjson.dumps(payload), extra)


async def send_body(
    send: Send, status: int, body: bytes, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """Answer the JSON ``body`` (already encoded) with ``status`` and the extra headers."""
    headers = [*_BASE_HEADERS, (b"content-length", str(len(body)).encode()), *extra]
    with contextlib.suppress(OSError):
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
