"""The inference server as a plain ASGI app: verify, authenticate, limit, batch, audit.

:func:`create_app` opens the home, checks that the operator's token may read each model,
loads every model through :meth:`ModelRegistry.load <bastion.workspace.Workspace.models>`
(signature, provenance chain and gates verified before one model byte is parsed; refused
otherwise), reads the pipeline's data schema to build each deployment's request contract,
and returns an ASGI callable. Routes::

    POST /v1/models/{name}/predict   {"instances": [...]} -> {"predictions": [...], "model": ...}
    GET  /healthz                    liveness, no auth
    GET  /readyz                     models loaded and the audit log reachable
    GET  /metrics                    Prometheus text       admin token unless from loopback
    GET  /openapi.json               OpenAPI 3.1 document  admin token unless from loopback

One predict request, in order: bearer token (401, ``WWW-Authenticate: Bearer``) → model
known (404, only after authentication) → ``deployment:predict`` on it (403) → body read
with a hard size limit (413, counted while reading; Content-Length is not trusted) →
schema (422 naming instance, field and what was expected) → the pluggable
:class:`Control` checks (rate limits, screening: their own statuses) → the micro-batcher,
under the request deadline (504) → ONE audit entry ``model.predict`` awaited through group
commit BEFORE anything is sent. If the audit log cannot take the entry the answer is 503
with no prediction (fail closed). Refusals are audited too, as ``anonymous`` when no token
was accepted. JSON is parsed and written with orjson; no pydantic on the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from bastion.errors import AccessDenied, AuditError, AuthError, ConfigError, Error, IntegrityError
from bastion.serving.auth import DEFAULT_CACHE_TTL, Authenticator, Caller, JwtSettings, JwtVerifier
from bastion.serving.batching import MicroBatcher
from bastion.serving.controls import (
    ACTIONS,
    THROTTLE_FACTOR,
    Blocklist,
    ControlMetrics,
    ExtractionGuard,
    RateLimit,
    Screening,
)
from bastion.serving.extraction import ExtractionMonitor
from bastion.serving.hardening import OutputPolicy
from bastion.serving.ratelimit import rate_limiter_from_env
from bastion.serving.requests import RequestRefused, RequestSchema
from bastion.serving.screening import InputScreen, TrainingProfile
from bastion.serving.tls import is_loopback

if TYPE_CHECKING:
    from bastion.workspace import Workspace

__all__ = [
    "Control",
    "Deployment",
    "ServeOptions",
    "ServerApp",
    "create_app",
    "openapi_document",
]

log = logging.getLogger("bastion.serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_PREFIX, _SUFFIX = "/v1/models/", "/predict"
_SAFE_NAME = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")
_BASE_HEADERS = [
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
]


class Control(Protocol):
    """A check every predict request passes after its schema (rate limit, screening, ...).

    ``check`` raises :class:`~bastion.serving.requests.RequestRefused` (e.g. 429 with a
    ``Retry-After`` header) to refuse; the refusal is audited with its ``decision``. To let
    the request through it returns ``None``, or a small dict of notes (JSON values) that
    go into the request's audit entry (e.g. screening's flagged rows).
    """

    async def check(
        self, caller: Caller, deployment: str, columns: dict[str, list[Any]]
    ) -> Mapping[str, Any] | None:
        """Refuse by raising RequestRefused; return None (or notes) to let it through."""


@dataclass(frozen=True)
class ServeOptions:
    """How the server runs. ``operator_token`` (admin or ml-engineer) is required."""

    operator_token: str = field(repr=False)
    max_body: int = 1 << 20
    max_batch: int = 1000
    timeout: float = 10.0
    jwt: JwtSettings | None = None
    token_cache_ttl: float = DEFAULT_CACHE_TTL
    batch_max_wait: float = 0.002
    batch_max_rows: int = 2048
    unsafe_skip_verify: bool = False
    listen: str = ""  # host:port, for the audit entry
    tls: str = "unknown"  # cert | self-signed | unsafe-no-tls, for the audit entry
    controls: Sequence[Control] = ()  # extra checks, after the built-in ones below
    # Rate limit and daily budget per principal, in rows (memory, or Redis when
    # BASTION_REDIS_URL is set). A request may carry at most ``burst`` rows.
    rate: float = 50.0
    burst: int = 200
    daily_budget: int | None = None
    # Input screening against the training profile: flag (audit note) or reject (422).
    screen: str = "flag"
    # What a response reveals: label | top_k | rounded | noised (see hardening.py).
    output: str = "label"
    top_k: int = 1
    decimals: int = 2
    noise_scale: float = 0.02
    # Extraction monitor's action on alarm: block | throttle | notify.
    on_extraction: str = "block"
    # Connection guards, applied by `bastion serve` before the app (see transport.py):
    # request headers (and the TLS handshake) within this many seconds; open connections
    # per client address.
    header_timeout: float = 5.0
    max_connections_per_client: int = 64


@dataclass
class Deployment:
    """One served model: its verified record, request contract, batcher and output policy."""

    name: str
    ref: str
    schema: RequestSchema
    batcher: MicroBatcher[Any]
    verified: bool
    output: OutputPolicy
    classes: list[str]
    profile: TrainingProfile | None = None


def _labels(
    model: Any, label_column: str, positive: str, categories: list[str] | None
) -> list[str]:
    """Class index → label string: classes 0/1 mean not-positive/positive (the train stage)."""
    classes = list(getattr(model, "classes_", []))
    if classes and all(isinstance(c, str) for c in classes):
        return [str(c) for c in classes]
    others = [c for c in (categories or []) if c != positive]
    negative = others[0] if len(others) == 1 else f"not {positive}"
    if [int(c) for c in classes] != [0, 1]:
        raise ConfigError(f"{label_column}: expected a binary model (classes 0/1), got {classes}")
    return [negative, positive]


def _predictor(model: Any, columns: Sequence[str]) -> Callable[..., Any]:
    """Rows → the probability matrix (rows × classes); the output policy runs after."""
    import pandas as pd

    names = list(columns)

    def predict(data: dict[str, list[Any]]) -> Any:
        return model.predict_proba(pd.DataFrame(data, columns=names))

    return predict


def _training_profile(ws: Workspace, contract: Any, schema: Any, label: str) -> TrainingProfile:
    """The profile of the training table its signed release names, restricted to the
    columns the model is served with."""
    import io

    import pandas as pd

    digest = contract.train_table
    if not digest:
        raise ConfigError(
            f"{contract.model}: its signed release names no training table (released by an"
            " older Bastion); input screening and the extraction monitor need it: run the"
            " pipeline again to release it"
        )
    frame = pd.read_parquet(io.BytesIO(ws.store.read_bytes(digest)))
    return TrainingProfile.from_frame(frame, schema, label)


def _one_thread() -> None:
    """Run the model single-threaded: OpenMP's spinning workers fight the event loop for
    the cores and made a one-row call 10x slower; batching gives the parallelism instead."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


def _pipeline_config(ws: Workspace, digest: str) -> Any:
    """The PipelineConfig a model was trained with, parsed by the pipeline's own loader."""
    from bastion.pipeline.loader import load_pipeline

    raw = ws.store.read_bytes(digest)
    with tempfile.TemporaryDirectory(prefix="bastion-serve-") as tmp:
        path = Path(tmp) / "pipeline.yaml"
        path.write_bytes(raw)
        config, _ = load_pipeline(path, check_env=False)  # read for its contract, not run
    return config


def _load(ws: Workspace, ref: str, options: ServeOptions, actor: str) -> tuple[Any, Any, Any, bool]:
    """(model, record, contract, verified). Verify-before-load unless --unsafe-skip-verify.

    The contract (pipeline file, training table) always comes from the release statement,
    whose signature is checked even with --unsafe-skip-verify; never from the record."""
    try:
        if not options.unsafe_skip_verify:
            model, verified = ws.models.load(ref)
            return model, verified.record, verified.contract, True
        log.warning("UNSAFE: serving %s without verifying its signature and provenance", ref)
        ws.audit.record(actor, "serve.unsafe_skip_verify", f"model:{ref}", "ok", {})
        model, record = ws.models.unsafe_load_unverified(ref)
        return model, record, ws.models.signed_contract(record), False
    except IntegrityError as exc:
        raise IntegrityError(f"refusing to serve {ref}: {exc}") from None


def create_app(
    ws_home: Path, passphrase: str, models: list[str], *, options: ServeOptions
) -> ServerApp:
    """Open the home, authorize the operator, verify and load ``models``; the ASGI app.

    Raises :class:`~bastion.errors.AuthError` / ``AccessDenied`` for the operator's token,
    :class:`~bastion.errors.IntegrityError` when a model fails verification, and
    :class:`~bastion.errors.ConfigError` for bad options. Nothing listens yet.
    """
    from bastion.workspace import Workspace, parse_model_ref

    if not models:
        raise ConfigError("models: name at least one NAME[:VERSION] to serve")
    if options.max_body < 1 or options.max_batch < 1 or options.timeout <= 0:
        raise ConfigError("--max-body, --max-batch and the timeout must be positive")
    if options.screen not in ("flag", "reject"):
        raise ConfigError(f"--screen: expected flag or reject, got {options.screen!r}")
    if options.on_extraction not in ACTIONS:
        raise ConfigError(
            f"--on-extraction: expected one of {', '.join(ACTIONS)}, got {options.on_extraction!r}"
        )
    output = OutputPolicy(
        options.output,  # type: ignore[arg-type]  # checked by OutputPolicy
        k=options.top_k,
        decimals=options.decimals,
        noise_scale=options.noise_scale,
    )
    limiter = rate_limiter_from_env(options.rate, options.burst, options.daily_budget)
    throttled = rate_limiter_from_env(
        options.rate / THROTTLE_FACTOR, options.burst, None, namespace="throttled:"
    )
    max_batch = min(options.max_batch, options.burst)
    jwt_verifier = JwtVerifier(options.jwt) if options.jwt is not None else None
    ws = Workspace.open(ws_home, passphrase, token=options.operator_token)
    ws.watch_access_state()  # a rolled-back access row refuses requests within 5 s + cache
    try:
        names = [parse_model_ref(ref)[0] for ref in models]
        if len(set(names)) != len(names):
            raise ConfigError("models: each model name may be served once")
        for name in names:
            ws.authorize("model:read", resource_type="model", resource=name)
        actor = ws.identity.principal
        deployments: dict[str, Deployment] = {}
        for ref in models:
            model, record, contract, verified = _load(ws, ref, options, actor)
            config = _pipeline_config(ws, contract.config)
            data = config.data
            columns = list(getattr(model, "feature_names_in_", [])) or [
                c for c in data.schema_ if c != data.label.column
            ]
            schema = RequestSchema.from_config(data.schema_, columns, max_batch=max_batch)
            label_spec = data.schema_[data.label.column]
            labels = _labels(model, data.label.column, data.label.positive, label_spec.categories)
            served = {c: data.schema_[c] for c in schema.columns}
            profile = _training_profile(ws, contract, served, data.label.column)
            batcher: MicroBatcher[Any] = MicroBatcher(
                _predictor(model, schema.columns),
                max_wait=options.batch_max_wait,
                max_rows=max(options.batch_max_rows, options.max_batch),
                thread_init=_one_thread,
            )
            deployments[record.name] = Deployment(
                record.name, record.ref, schema, batcher, verified, output, labels, profile
            )
        ws.audit.record(
            actor,
            "serve.start",
            "server",
            "ok",
            {
                "models": [d.ref for d in deployments.values()],
                "listen": options.listen,
                "tls": options.tls,
                "verified": all(d.verified for d in deployments.values()),
                "rate": options.rate,
                "burst": options.burst,
                "daily_budget": options.daily_budget,
                "screen": options.screen,
                "output": options.output,
                "on_extraction": options.on_extraction,
            },
        )
        if options.tls == "unsafe-no-tls":
            log.warning("UNSAFE: serving plain HTTP (loopback only)")
            ws.audit.record(
                actor, "serve.unsafe_no_tls", "server", "ok", {"listen": options.listen}
            )
    except BaseException:
        ws.close()
        raise
    auth = Authenticator(ws, jwt_verifier=jwt_verifier, cache_ttl=options.token_cache_ttl)
    metrics = _Metrics()
    counters = ControlMetrics(metrics.registry)
    blocklist = Blocklist(counters)
    rate_limit = RateLimit(limiter, options.burst, throttled, counters)
    guard = ExtractionGuard(
        {n: ExtractionMonitor(d.profile) for n, d in deployments.items() if d.profile},
        options.on_extraction,  # type: ignore[arg-type]  # checked above
        audit=ws.audit.arecord,
        blocklist=blocklist,
        rate_limit=rate_limit,
        counters=counters,
    )
    screening = Screening(
        {
            n: InputScreen(d.profile, policy=options.screen)  # type: ignore[arg-type]
            for n, d in deployments.items()
            if d.profile
        },
        counters,
    )
    controls: list[Control] = [blocklist, rate_limit, guard, screening, *options.controls]
    return ServerApp(
        ws,
        deployments,
        auth,
        options,
        controls=controls,
        metrics=metrics,
        closers=[limiter, throttled],
    )


class _Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "bastion_requests",
            "Predict requests by deployment and HTTP status.",
            ["deployment", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "bastion_request_seconds",
            "Predict latency, from first byte read to audit entry durable.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        self.rows = Counter("bastion_rows", "Rows predicted.", registry=self.registry)
        self.batches = Counter("bastion_batches", "Model calls made.", registry=self.registry)
        self._children: dict[tuple[str, int], Any] = {}

    def observe(self, deployment: str, status: int, seconds: float) -> None:
        child = self._children.get((deployment, status))
        if child is None:
            child = self._children[(deployment, status)] = self.requests.labels(
                deployment, str(status)
            )
        child.inc()
        self.latency.observe(seconds)

    def on_batch(self, requests: int, rows: int, seconds: float) -> None:
        self.batches.inc()
        self.rows.inc(rows)


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
        metrics: _Metrics | None = None,
        closers: Sequence[object] = (),
    ) -> None:
        self.ws = ws
        self.deployments = deployments
        self.auth = auth
        self.options = options
        self.controls = list(options.controls if controls is None else controls)
        self.metrics = metrics if metrics is not None else _Metrics()
        self._closers = list(closers)
        for dep in deployments.values():
            dep.batcher._on_batch = self.metrics.on_batch
        self._openapi = orjson.dumps(openapi_document(deployments))
        self._closed = False

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
        if path.startswith(_PREFIX) and path.endswith(_SUFFIX):
            if method != "POST":
                await _respond(send, 405, {"error": "method not allowed"}, [(b"allow", b"POST")])
                return
            await self._predict(scope, receive, send, path[len(_PREFIX) : -len(_SUFFIX)])
            return
        if method != "GET" and path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            await _respond(send, 405, {"error": "method not allowed"}, [(b"allow", b"GET")])
            return
        if path == "/healthz":
            await _respond(send, 200, {"status": "ok"})
        elif path == "/readyz":
            ready, why = await self._ready()
            await _respond(send, 200 if ready else 503, {"ready": ready, "reason": why})
        elif path in ("/metrics", "/openapi.json"):
            await self._admin(scope, send, path)
        else:
            await _respond(send, 404, {"error": "not found"})

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
                token = self.auth.bearer(_header(scope, b"authorization"))
                caller, key = await self.auth.authenticate(token)
                await self.auth.authorize(caller, key, "serve:admin")
            except AuthError:
                await _respond(send, 401, {"error": "unauthorized"}, _CHALLENGE)
                return
            except AccessDenied:
                await _respond(send, 403, {"error": "forbidden"})
                return
        if path == "/openapi.json":
            await _send(send, 200, self._openapi)
            return
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body = generate_latest(self.metrics.registry)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", CONTENT_TYPE_LATEST.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    # -- predict --------------------------------------------------------------------------

    async def _predict(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        started = time.perf_counter()
        principal = "anonymous"
        rows = 0
        digest: str | None = None
        extra: list[tuple[bytes, bytes]] = []
        notes: dict[str, Any] = {}
        dep = self.deployments.get(name)
        ref = dep.ref if dep is not None else None
        payload: dict[str, Any]
        try:
            async with asyncio.timeout(self.options.timeout):
                token = self.auth.bearer(_header(scope, b"authorization"))
                caller, key = await self.auth.authenticate(token)
                principal = caller.principal
                if dep is None:
                    raise RequestRefused(404, "no such model", decision="unknown_model")
                await self.auth.authorize(caller, key, "deployment:predict", "deployment", name)
                body = await _read_body(scope, receive, self.options.max_body)
                digest = hashlib.sha256(body).hexdigest()
                columns = dep.schema.parse(body)
                rows = len(columns[dep.schema.columns[0]])
                for control in self.controls:
                    note = await control.check(caller, name, columns)
                    if note:
                        notes.update(note)
                proba = await dep.batcher.submit(columns)
                predictions = dep.output.apply(_stack(proba), dep.classes)
            status, outcome, decision = 200, "ok", "ok"
            payload = {"predictions": predictions, "model": dep.ref}
        except AuthError:
            status, outcome, decision = 401, "denied", "unauthenticated"
            payload = {"error": "unauthorized"}
            extra = _CHALLENGE
        except AccessDenied:
            status, outcome, decision = 403, "denied", "forbidden"
            payload = {"error": "forbidden"}
        except RequestRefused as refused:
            status, outcome, decision = refused.status, "denied", refused.decision
            payload = {"error": refused.message}
            if refused.problems:
                payload["problems"] = refused.problems
            extra = [(k.lower().encode(), v.encode()) for k, v in refused.headers.items()]
        except TimeoutError:
            status, outcome, decision = 504, "failed", "timeout"
            payload = {"error": "deadline exceeded"}
        except AuditError as exc:  # a control's own audit entry (extraction alarm) failed
            log.error("audit log unavailable, request refused (fail closed): %s", exc)
            status, outcome, decision = 503, "failed", "audit_unavailable"
            payload = {"error": "audit log unavailable"}
        except _ClientGone:
            status, outcome, decision = 0, "failed", "client_gone"
            payload = {}
        except Exception:
            log.exception("predict on %s failed", ref)
            status, outcome, decision = 500, "failed", "error"
            payload = {"error": "internal error"}
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        details = {
            "model": ref,
            "rows": rows,
            "input_sha256": digest,
            "decision": decision,
            "status": status,
            "latency_ms": latency_ms,
            **notes,
        }
        try:
            await self.ws.audit.arecord(
                principal, "model.predict", f"deployment:{_safe(name)}", outcome, details
            )
        except (AuditError, Error) as exc:
            log.error("audit log unavailable, request refused (fail closed): %s", exc)
            status, payload, extra = 503, {"error": "audit log unavailable"}, []
        self.metrics.observe(
            name if dep is not None else "-", status, time.perf_counter() - started
        )
        if status:
            await _respond(send, status, payload, extra)


_CHALLENGE = [(b"www-authenticate", b'Bearer realm="bastion"')]


def _stack(proba: Sequence[Any]) -> Any:
    """The batcher's per-row probability vectors as one matrix for the output policy."""
    import numpy as np

    return np.asarray(proba, dtype=np.float64)


class _ClientGone(Exception):
    """The client disconnected before its body arrived."""


def _safe(name: str) -> str:
    """A deployment name fit for the audit log (attacker-chosen paths are not)."""
    if 0 < len(name) <= 64 and _SAFE_NAME.issuperset(name):
        return name
    return "<invalid>"


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == wanted:
            return bytes(value)
    return None


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body, refused (413) as soon as it grows past ``limit`` bytes."""
    declared = _header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestRefused(413, f"body: larger than {limit} bytes", decision="too_large")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestRefused(413, f"body: larger than {limit} bytes", decision="too_large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _respond(
    send: Send, status: int, payload: Any, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    await _send(send, status, orjson.dumps(payload), extra)


async def _send(
    send: Send, status: int, body: bytes, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    headers = [*_BASE_HEADERS, (b"content-length", str(len(body)).encode()), *extra]
    with contextlib.suppress(OSError):
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def openapi_document(deployments: dict[str, Deployment]) -> dict[str, Any]:
    """OpenAPI 3.1 for the routes, with each deployment's instance schema."""
    error = {
        "type": "object",
        "properties": {"error": {"type": "string"}, "problems": {"type": "array"}},
        "required": ["error"],
    }
    err = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    schemas: dict[str, Any] = {"Error": error}
    paths: dict[str, Any] = {}
    for name, dep in deployments.items():
        key = "".join(ch if ch.isalnum() else "_" for ch in name)
        schemas[f"{key}_instance"] = dep.schema.instance_schema()
        schemas[f"{key}_request"] = {
            "type": "object",
            "additionalProperties": False,
            "required": ["instances"],
            "properties": {
                "instances": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": dep.schema.max_batch,
                    "items": {"$ref": f"#/components/schemas/{key}_instance"},
                }
            },
        }
        paths[f"{_PREFIX}{name}{_SUFFIX}"] = {
            "post": {
                "operationId": f"predict_{key}",
                "summary": f"Predict with {dep.ref}",
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{key}_request"}
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": f"One prediction per instance ({dep.output.mode}).",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["predictions", "model"],
                                    "properties": {
                                        "predictions": {
                                            "type": "array",
                                            "items": {"type": "string"}
                                            if dep.output.mode == "label"
                                            else {},
                                        },
                                        "model": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    **{
                        code: {"description": why, **err}
                        for code, why in (
                            ("401", "missing, malformed, wrong, expired or revoked token"),
                            ("403", "this token may not use this deployment"),
                            ("404", "no such model"),
                            ("413", "body too large"),
                            ("422", "instances do not match the schema"),
                            ("429", "rate limit or query budget exhausted"),
                            ("503", "audit log unavailable (fail closed)"),
                            ("504", "deadline exceeded"),
                        )
                    },
                },
            }
        }
    plain = {"200": {"description": "OK"}, "503": {"description": "not ready"}}
    paths["/healthz"] = {"get": {"operationId": "healthz", "responses": {"200": plain["200"]}}}
    paths["/readyz"] = {"get": {"operationId": "readyz", "responses": plain}}
    admin = {"security": [{"bearer": []}], "responses": {"200": {"description": "OK"}}}
    paths["/metrics"] = {"get": {"operationId": "metrics", **admin}}
    paths["/openapi.json"] = {"get": {"operationId": "openapi", **admin}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Bastion inference server", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
