"""The inference server as a plain ASGI app: verify, authenticate, limit, batch, audit.

:func:`create_app` checks the options, opens the home, loads the deployments
(:mod:`~bastion.serving.deployment`: operator authorized, every model verified before it is
parsed, request contracts from the signed release), builds the controls and returns an ASGI
callable, :class:`ServerApp`. Routes::

    POST /v1/models/{name}/predict   {"instances": [...]} -> {"predictions": [...], "model": ...}
    GET  /healthz                    liveness, no auth
    GET  /readyz                     models loaded and the audit log reachable
    GET  /metrics                    Prometheus text       beyond loopback: audit:read
    GET  /openapi.json               OpenAPI 3.1 document  beyond loopback: any valid token

(``/metrics`` only counts what ``audit:read`` may read entry by entry in the audit log;
``/openapi.json`` is the contract every caller needs.)

One predict request, in order: bearer token (401, ``WWW-Authenticate: Bearer``) → model
known (404, only after authentication) → ``deployment:predict`` on it (403) → body read
with a hard size limit (413, counted while reading; Content-Length is not trusted) →
schema (422 naming instance, field and what was expected) → the pluggable
:class:`Control` checks (rate limits, screening: their own statuses) → the micro-batcher,
under the request deadline (504) → ONE audit entry ``model.predict`` committed (group
commit; inline when it is the only request) BEFORE anything is sent. If the audit log
cannot take the entry the answer is 503 with no prediction (fail closed). Refusals are
audited too, as ``anonymous`` when no token was accepted. JSON is parsed and written
with orjson; no pydantic on the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from bastion.errors import AccessDenied, AuditError, AuthError, Error
from bastion.monitoring.extraction import ExtractionMonitor
from bastion.monitoring.screening import InputScreen
from bastion.serving.asgi import (
    CHALLENGE,
    PREDICT_PREFIX,
    PREDICT_SUFFIX,
    ClientGone,
    Receive,
    Scope,
    Send,
    audit_name,
    header,
    read_body,
    respond,
    send_body,
)
from bastion.serving.auth import Authenticator, JwtVerifier
from bastion.serving.blocks import BlockMirror, block_mirror_from_env
from bastion.serving.controls import (
    THROTTLE_FACTOR,
    Blocklist,
    Control,
    ExtractionGuard,
    RateLimit,
    Screening,
)
from bastion.serving.deployment import (
    Deployment,
    ServeOptions,
    check_options,
    load_deployments,
)
from bastion.serving.metrics import ControlMetrics, ServerMetrics
from bastion.serving.openapi import openapi_document
from bastion.serving.ratelimit import RateLimiter, rate_limiter_from_env
from bastion.serving.requests import RequestRefused
from bastion.serving.summary import audit_start
from bastion.serving.tls import is_loopback

if TYPE_CHECKING:
    from bastion.workspace import Workspace

__all__ = ["ADMIN_PERMISSIONS", "ServerApp", "create_app"]

log = logging.getLogger("bastion.serving")

_ADMIN_PATHS = ("/healthz", "/readyz", "/metrics", "/openapi.json")
#: What a caller beyond loopback needs for each admin route (None: any valid token).
ADMIN_PERMISSIONS: dict[str, str | None] = {"/metrics": "audit:read", "/openapi.json": None}


def create_app(
    ws_home: Path, passphrase: str, models: list[str], *, options: ServeOptions
) -> ServerApp:
    """Open the home, authorize the operator, verify and load ``models``; the ASGI app.

    Raises :class:`~bastion.errors.AuthError` / ``AccessDenied`` for the operator's token,
    :class:`~bastion.errors.IntegrityError` when a model fails verification, and
    :class:`~bastion.errors.ConfigError` for bad options. Nothing listens yet.
    """
    from bastion.workspace import Workspace

    output = check_options(models, options)
    limiter = rate_limiter_from_env(options.rate, options.burst, None)  # budgets: per call
    throttled = rate_limiter_from_env(
        options.rate / THROTTLE_FACTOR, options.burst, None, namespace="throttled:"
    )
    jwt_verifier = JwtVerifier(options.jwt) if options.jwt is not None else None
    mirror = block_mirror_from_env()  # active blocks shared through Redis, when configured
    ws = Workspace.open(ws_home, passphrase, token=options.operator_token)
    ws.watch_access_state()  # a rolled-back access row refuses requests within 5 s + cache
    metrics = ServerMetrics()
    try:
        deployments = load_deployments(ws, models, options, output, on_batch=metrics.on_batch)
        audit_start(ws, deployments, options)
    except BaseException:
        ws.close()
        raise
    auth = Authenticator(ws, jwt_verifier=jwt_verifier, cache_ttl=options.token_cache_ttl)
    controls = _controls(ws, deployments, options, (limiter, throttled), metrics, mirror)
    return ServerApp(
        ws,
        deployments,
        auth,
        options,
        controls=controls,
        metrics=metrics,
        closers=[limiter, throttled, *([mirror] if mirror is not None else [])],
    )


def _controls(
    ws: Workspace,
    deployments: dict[str, Deployment],
    options: ServeOptions,
    limiters: tuple[RateLimiter, RateLimiter],
    metrics: ServerMetrics,
    mirror: BlockMirror | None = None,
) -> list[Control]:
    """The built-in checks in their order (controls.py), then the options' own."""
    counters = ControlMetrics(metrics.registry)
    blocklist = Blocklist(counters, ws.block_store, mirror=mirror)
    blocklist.load()  # the active blocks survive a restart (serving/blocks.py)
    budgets = {n: d.budget for n, d in deployments.items()}
    rate_limit = RateLimit(limiters[0], options.burst, limiters[1], counters, budgets)
    profiled = {n: d.profile for n, d in deployments.items() if d.profile}
    guard = ExtractionGuard(
        {n: ExtractionMonitor(p) for n, p in profiled.items()},
        options.on_extraction,  # type: ignore[arg-type]  # checked by check_options
        audit=ws.audit.arecord,
        blocklist=blocklist,
        rate_limit=rate_limit,
        counters=counters,
    )
    screening = Screening(
        {
            n: InputScreen(p, policy=options.screen)  # type: ignore[arg-type]
            for n, p in profiled.items()
        },
        counters,
    )
    return [blocklist, rate_limit, guard, screening, *options.controls]


@dataclass(slots=True)
class _Call:
    """What one predict request's audit entry records, filled in as the request goes."""

    principal: str = "anonymous"
    rows: int = 0
    digest: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)


class ServerApp:
    """The ASGI app :func:`create_app` returns; it owns the workspace and closes it."""

    def __init__(
        self,
        ws: Workspace,
        deployments: dict[str, Deployment],
        auth: Authenticator,
        options: ServeOptions,
        *,
        controls: Sequence[Control] | None = None,
        metrics: ServerMetrics | None = None,
        closers: Sequence[object] = (),
    ) -> None:
        self.ws = ws
        self.deployments = deployments
        self.auth = auth
        self.options = options
        self.controls = list(options.controls if controls is None else controls)
        self.metrics = metrics if metrics is not None else ServerMetrics()
        self._closers = list(closers)
        self._openapi = orjson.dumps(openapi_document(deployments))
        self._closed = False
        self._in_flight = 0  # predict requests being answered (one: audit inline)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    # -- life cycle -----------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for dep in self.deployments.values():
                    dep.batcher.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """Stop the batchers, then close the workspace (which flushes the audit log)."""
        if self._closed:
            return
        self._closed = True
        for dep in self.deployments.values():
            await dep.batcher.close()
        for closer in self._closers:
            aclose = getattr(closer, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        await asyncio.to_thread(self.ws.close)

    # -- routing --------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith(PREDICT_PREFIX) and path.endswith(PREDICT_SUFFIX):
            if method != "POST":
                await respond(send, 405, {"error": "method not allowed"}, [(b"allow", b"POST")])
                return
            name = path[len(PREDICT_PREFIX) : -len(PREDICT_SUFFIX)]
            self._in_flight += 1
            try:
                await self._predict(scope, receive, send, name)
            finally:
                self._in_flight -= 1
            return
        if method != "GET" and path in _ADMIN_PATHS:
            await respond(send, 405, {"error": "method not allowed"}, [(b"allow", b"GET")])
            return
        if path == "/healthz":
            await respond(send, 200, {"status": "ok"})
        elif path == "/readyz":
            ready, why = await self._ready()
            await respond(send, 200 if ready else 503, {"ready": ready, "reason": why})
        elif path in ("/metrics", "/openapi.json"):
            await self._admin(scope, send, path)
        else:
            await respond(send, 404, {"error": "not found"})

    async def _ready(self) -> tuple[bool, str]:
        if self._closed:
            return False, "shutting down"
        if not self.deployments:
            return False, "no models loaded"
        try:
            await asyncio.to_thread(self.ws.audit.head)  # the audit log's database answers
        except Exception:
            return False, "audit log unreachable"
        return True, "ok"

    async def _admin(self, scope: Scope, send: Send, path: str) -> None:
        client = scope.get("client")
        if not (client and is_loopback(str(client[0]))):
            try:
                token = self.auth.bearer(header(scope, b"authorization"))
                caller, key = await self.auth.authenticate(token)
                permission = ADMIN_PERMISSIONS[path]
                if permission is not None:
                    await self.auth.authorize(caller, key, permission)
            except AuthError:
                self.metrics.auth_failure("admin", 401)
                await respond(send, 401, {"error": "unauthorized"}, CHALLENGE)
                return
            except AccessDenied:
                self.metrics.auth_failure("admin", 403)
                await respond(send, 403, {"error": "forbidden"})
                return
        if path == "/openapi.json":
            await send_body(send, 200, self._openapi)
            return
        content_type, body = self.metrics.exposition()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    # -- predict --------------------------------------------------------------------------

    async def _predict(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        started = time.perf_counter()
        dep = self.deployments.get(name)
        ref = dep.ref if dep is not None else None
        call = _Call()
        extra: Sequence[tuple[bytes, bytes]] = ()
        try:
            async with asyncio.timeout(self.options.timeout):
                predictions = await self._answer(scope, receive, name, dep, call)
            status, outcome, decision = 200, "ok", "ok"
            payload: dict[str, Any] = {"predictions": predictions, "model": ref}
        except Exception as exc:
            status, outcome, decision, payload, extra = _refusal(exc, ref)
            if status in (401, 403) and decision in ("unauthenticated", "forbidden"):
                self.metrics.auth_failure("predict", status)
        details = {
            "model": ref,
            "rows": call.rows,
            "input_sha256": call.digest,
            "decision": decision,
            "status": status,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            **call.notes,
        }
        submitted = time.perf_counter()
        entry = (call.principal, "model.predict", f"deployment:{audit_name(name)}", outcome)
        try:  # alone: committed here, no thread hand-off (security/audit/inline.py)
            if self._in_flight > 1 or self.ws.audit.record_now(*entry, details) is None:
                await self.ws.audit.arecord(*entry, details)
            self.metrics.audit_write.observe(time.perf_counter() - submitted)
        except (AuditError, Error) as exc:
            log.error("audit log unavailable, request refused (fail closed): %s", exc)
            self.metrics.audit_failures.inc()
            status, payload, extra = 503, {"error": "audit log unavailable"}, ()
        self.metrics.observe(
            name if dep is not None else "-", status, time.perf_counter() - started
        )
        if status:
            await respond(send, status, payload, extra)

    async def _answer(
        self, scope: Scope, receive: Receive, name: str, dep: Deployment | None, call: _Call
    ) -> list[Any]:
        """Authenticate, authorize, read and check the body, run the controls, predict."""
        token = self.auth.bearer(header(scope, b"authorization"))
        caller, key = await self.auth.authenticate(token)
        call.principal = caller.principal
        if dep is None:
            raise RequestRefused(404, "no such model", decision="unknown_model")
        await self.auth.authorize(caller, key, "deployment:predict", "deployment", name)
        body = await read_body(scope, receive, self.options.max_body)
        call.digest = hashlib.sha256(body).hexdigest()
        columns = dep.schema.parse(body)
        call.rows = len(columns[dep.schema.columns[0]])
        for control in self.controls:
            note = await control.check(caller, name, columns)
            if note:
                call.notes.update(note)
        proba = await dep.batcher.submit(columns)
        return dep.output.apply(np.asarray(proba, dtype=np.float64), dep.classes)


def _refusal(
    exc: Exception, ref: str | None
) -> tuple[int, str, str, dict[str, Any], Sequence[tuple[bytes, bytes]]]:
    """(status, audit outcome, decision, payload, extra headers) for a refused request."""
    if isinstance(exc, AuthError):
        return 401, "denied", "unauthenticated", {"error": "unauthorized"}, CHALLENGE
    if isinstance(exc, AccessDenied):
        return 403, "denied", "forbidden", {"error": "forbidden"}, ()
    if isinstance(exc, RequestRefused):
        payload: dict[str, Any] = {"error": exc.message}
        payload.update(getattr(exc, "body", None) or {})  # a reason code (serving/blocks.py)
        if exc.problems:
            payload["problems"] = exc.problems
        extra = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
        return exc.status, "denied", exc.decision, payload, extra
    if isinstance(exc, TimeoutError):
        return 504, "failed", "timeout", {"error": "deadline exceeded"}, ()
    if isinstance(exc, AuditError):  # a control's own audit entry (extraction alarm) failed
        log.error("audit log unavailable, request refused (fail closed): %s", exc)
        return 503, "failed", "audit_unavailable", {"error": "audit log unavailable"}, ()
    if isinstance(exc, ClientGone):
        return 0, "failed", "client_gone", {}, ()
    log.error("predict on %s failed", ref, exc_info=exc)
    return 500, "failed", "error", {"error": "internal error"}, ()
