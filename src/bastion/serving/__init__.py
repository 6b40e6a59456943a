"""The inference server: authenticated, rate-limited, screened and audited serving.

``bastion serve`` (``cli/serve.py``) is a thin shell over :func:`create_app`, which returns
a plain ASGI app. The parts::

    app.py        create_app: verify-before-load, routes, the predict path, audit (fail closed)
    auth.py       bearer API tokens (5 s cache) and OIDC/JWT (RS256/ES256 from a JWKS)
    requests.py   the request contract generated from the pipeline's data schema
    batching.py   MicroBatcher: concurrent requests' rows in one model call
    tls.py        TLS by default (HSTS); self-signed development certificate; loopback-only HTTP
    transport.py  connection guards: header-read timeout, open connections per client
    controls.py   the per-request checks, on by default: blocklist, rate limit and daily
                  budget (ratelimit.py; Redis when BASTION_REDIS_URL is set), extraction
                  monitor (extraction.py, PRADA + coverage), input screening (screening.py)
    hardening.py  output policy after predict: label only, top-k, rounded or noised scores
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "HSTS",
    "Control",
    "JwtSettings",
    "MicroBatcher",
    "RequestSchema",
    "ServeOptions",
    "ServerApp",
    "TlsFiles",
    "bound_tls_handshake",
    "create_app",
    "guarded_protocol",
    "resolve_tls",
]

if TYPE_CHECKING:
    from bastion.serving.app import Control, ServeOptions, ServerApp, create_app
    from bastion.serving.auth import JwtSettings
    from bastion.serving.batching import MicroBatcher
    from bastion.serving.requests import RequestSchema
    from bastion.serving.tls import HSTS, TlsFiles, resolve_tls
    from bastion.serving.transport import bound_tls_handshake, guarded_protocol

_WHERE = {
    "Control": "app",
    "ServeOptions": "app",
    "ServerApp": "app",
    "create_app": "app",
    "JwtSettings": "auth",
    "MicroBatcher": "batching",
    "RequestSchema": "requests",
    "TlsFiles": "tls",
    "resolve_tls": "tls",
    "HSTS": "tls",
    "guarded_protocol": "transport",
    "bound_tls_handshake": "transport",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'bastion.serving' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"bastion.serving.{module}"), name)
