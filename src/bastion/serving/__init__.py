"""The inference server: authenticated, rate-limited, screened and audited serving.

``bastion serve`` (``cli/serve.py``) is a thin shell over :func:`create_app`, which returns
a plain ASGI app. The parts::

    app.py         create_app (assembly) and ServerApp: routes, the predict path, audit
                   (fail closed)
    deployment.py  ServeOptions; each model verified, loaded and given its request contract
                   from its signed release
    asgi.py        ASGI plumbing: bounded body reads, JSON answers, headers
    openapi.py     the OpenAPI 3.1 document
    metrics.py     Prometheus metrics of the server and of the controls
    auth.py        bearer API tokens (5 s cache) and OIDC/JWT (RS256/ES256 from a JWKS)
    requests.py    the request contract generated from the pipeline's data schema
    batching.py    MicroBatcher: concurrent requests' rows in one model call
    tls.py         TLS by default (HSTS); self-signed development certificate; loopback-only
                   HTTP
    transport.py   connection guards: header-read timeout, open connections per client
    controls.py    the per-request checks, on by default: blocklist, rate limit and daily
                   budget (ratelimit.py; Redis when BASTION_REDIS_URL is set), extraction
                   monitor and input screening (both in bastion.monitoring)

Output hardening after predict (label only, top-k, rounded or noised scores) is
:mod:`bastion.defenses.hardening`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "EVENT_LOOP",
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
    from bastion.serving.app import ServerApp, create_app
    from bastion.serving.auth import JwtSettings
    from bastion.serving.batching import MicroBatcher
    from bastion.serving.controls import Control
    from bastion.serving.deployment import ServeOptions
    from bastion.serving.requests import RequestSchema
    from bastion.serving.tls import HSTS, TlsFiles, resolve_tls
    from bastion.serving.transport import EVENT_LOOP, bound_tls_handshake, guarded_protocol

_WHERE = {
    "Control": "controls",
    "ServeOptions": "deployment",
    "ServerApp": "app",
    "create_app": "app",
    "JwtSettings": "auth",
    "MicroBatcher": "batching",
    "RequestSchema": "requests",
    "TlsFiles": "tls",
    "resolve_tls": "tls",
    "HSTS": "tls",
    "guarded_protocol": "transport",
    "EVENT_LOOP": "transport",
    "bound_tls_handshake": "transport",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'bastion.serving' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"bastion.serving.{module}"), name)
