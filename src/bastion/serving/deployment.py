"""What the server serves: its options, and each model loaded for serving from signed data.

:func:`load_deployments` checks that the operator's token may read each model, loads every
model through :meth:`ModelRegistry.load <bastion.workspace.Workspace.models>` (signature,
provenance chain and gates verified before one model byte is parsed; refused otherwise),
and builds each :class:`Deployment` from the model's SIGNED contract (the release statement,
never the row): the pipeline file it was trained with gives the request contract and the
class labels, the training table it names gives the profile that input screening and the
extraction monitor compare requests with.

The rows of one request are bounded by ``max_batch``: by default the smaller of
:data:`DEFAULT_MAX_BATCH` and the rate limit's ``burst`` (a request of more rows than the
burst could never pass), and an explicit ``max_batch`` above the burst is refused at start.
:func:`~bastion.serving.summary.server_summary` is what ``bastion serve`` prints once it listens;
:func:`model_inputs` is the input schema ``bastion models show`` prints. Each deployment's
daily budget per principal comes from ``--daily-budget`` (``auto``: sized from the model's
signed extraction audit) and ``--principal-budget`` (:mod:`.budgets`).
Each deployment predicts with the compiled form its release signed when its signed parity
passed, else with scikit-learn, and says which and why (``serving/compiled.py``).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from bastion.defenses.hardening import OutputPolicy
from bastion.errors import ConfigError, IntegrityError
from bastion.monitoring.screening import TrainingProfile
from bastion.serving.auth import DEFAULT_CACHE_TTL, JwtSettings
from bastion.serving.batching import INLINE_ROWS, MicroBatcher
from bastion.serving.budgets import AUTO, Budget, check_budget_options, deployment_budget
from bastion.serving.compiled import ENGINES, SKLEARN, choose_engine
from bastion.serving.controls import ACTIONS
from bastion.serving.requests import RequestSchema
from bastion.spec.labels import label_names
from bastion.workspace import AUDIT_DURABILITIES, Workspace

if TYPE_CHECKING:
    from bastion.serving.controls import Control

__all__ = [
    "DEFAULT_MAX_BATCH",
    "Deployment",
    "ServeOptions",
    "batch_limit",
    "check_options",
    "load_deployments",
    "model_inputs",
]

log = logging.getLogger("bastion.serving")

DEFAULT_MAX_BATCH = 1000  # rows per request unless --max-batch, and never above --burst


@dataclass(frozen=True)
class ServeOptions:
    """How the server runs. ``operator_token`` (admin or ml-engineer) is required."""

    operator_token: str = field(repr=False)
    max_body: int = 1 << 20
    max_batch: int | None = None  # None: DEFAULT_MAX_BATCH, or ``burst`` when lower
    timeout: float = 10.0
    jwt: JwtSettings | None = None
    token_cache_ttl: float = DEFAULT_CACHE_TTL
    batch_max_wait: float = 0.0  # 0: what queues while the model runs is the next batch
    batch_max_rows: int = 2048
    unsafe_skip_verify: bool = False
    listen: str = ""  # host:port, for the audit entry
    tls: str = "unknown"  # cert | self-signed | unsafe-no-tls, for the audit entry
    controls: Sequence[Control] = ()  # extra checks, after the built-in ones below
    # Rate limit per principal, and daily budget per deployment and principal, in rows
    # (memory, or Redis when BASTION_REDIS_URL is set). A request may carry at most
    # ``burst`` rows. "auto" (the default, CLI and API alike): sized per deployment from the
    # model's signed extraction audit (budgets.py); an integer: that many; None: off.
    rate: float = 50.0
    burst: int = 200
    daily_budget: int | Literal["auto"] | None = AUTO
    # A principal's own budget on every deployment (a bulk scorer, a load test).
    principal_budgets: Mapping[str, int] = field(default_factory=dict)
    # Input screening against the training profile: flag (audit note) or reject (422).
    screen: str = "flag"
    # What a response reveals: label | top_k | rounded | noised (defenses/hardening.py).
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
    # Accept and drop request fields that the data schema declares but the model does not
    # take (data minimisation); undeclared fields are refused whatever this says.
    drop_declared_fields: bool = False
    # "auto": the release's compiled form when its signed parity passed; or "scikit-learn".
    inference: str = "auto"
    audit_durability: str = "flush"  # or "fsync": when an entry counts (audit/durability.py)


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
    digest: str = ""  # sha256 of the model artifact that was verified and loaded
    inference: str = SKLEARN  # compiled | scikit-learn
    inference_reason: str = ""  # why not compiled, when not
    budget: Budget = field(default_factory=lambda: Budget(None, "off"))  # rows per principal


def check_options(models: Sequence[str], options: ServeOptions) -> OutputPolicy:
    """Refuse bad options (ConfigError naming the flag); the output policy they ask for."""
    if not models:
        raise ConfigError("models: name at least one NAME[:VERSION] to serve")
    if options.max_body < 1 or options.timeout <= 0:
        raise ConfigError("--max-body and the timeout must be positive")
    if options.max_batch is not None and options.max_batch < 1:
        raise ConfigError(f"--max-batch: expected a positive integer, got {options.max_batch}")
    if options.max_batch is not None and options.max_batch > options.burst:
        raise ConfigError(
            f"--max-batch {options.max_batch}: more rows than --burst {options.burst} lets one"
            f" principal send at once, so such requests could never pass; raise --burst to at"
            f" least {options.max_batch}, or lower --max-batch"
        )
    oidc = options.jwt is not None
    check_budget_options(options.daily_budget, options.principal_budgets, None, oidc=oidc)
    if options.audit_durability not in AUDIT_DURABILITIES:
        got = options.audit_durability
        raise ConfigError(
            f"--audit-durability: expected {' or '.join(AUDIT_DURABILITIES)}, got {got!r}"
        )
    if options.screen not in ("flag", "reject"):
        raise ConfigError(f"--screen: expected flag or reject, got {options.screen!r}")
    if options.inference not in ENGINES:
        raise ConfigError(
            f"inference: expected one of {', '.join(ENGINES)}, got {options.inference!r}"
        )
    if options.on_extraction not in ACTIONS:
        raise ConfigError(
            f"--on-extraction: expected one of {', '.join(ACTIONS)}, got {options.on_extraction!r}"
        )
    return OutputPolicy(
        options.output,  # type: ignore[arg-type]  # checked by OutputPolicy
        k=options.top_k,
        decimals=options.decimals,
        noise_scale=options.noise_scale,
    )


def batch_limit(options: ServeOptions) -> tuple[int, str]:
    """The most rows per request, and what a refusal says about where it comes from."""
    if options.max_batch is not None:
        return options.max_batch, (
            f"the server's --max-batch; --max-batch and --burst (now {options.burst}) raise it"
        )
    if options.burst < DEFAULT_MAX_BATCH:
        return options.burst, (
            "the server's --burst, the rows a principal may send at once; --burst raises it"
        )
    return DEFAULT_MAX_BATCH, "the server's default --max-batch; --max-batch raises it"


def load_deployments(
    ws: Workspace,
    models: Sequence[str],
    options: ServeOptions,
    output: OutputPolicy,
    *,
    on_batch: Callable[[int, int, float], None] | None = None,
) -> dict[str, Deployment]:
    """Authorize the operator for, verify and load each of ``models``: name → Deployment.

    ``on_batch`` is each batcher's callback after a model call (the server's metrics).
    The process's native thread pools (OpenMP, BLAS) are limited to one thread from here
    on: the event loop predicts small batches itself (see :func:`_one_thread`).
    """
    from bastion.workspace import parse_model_ref

    names = [parse_model_ref(ref)[0] for ref in models]
    if len(set(names)) != len(names):
        raise ConfigError("models: each model name may be served once")
    for name in names:
        ws.authorize("model:read", resource_type="model", resource=name)
    known = [p.name for p in ws.access.list_principals()] if options.principal_budgets else []
    oidc = options.jwt is not None
    check_budget_options(options.daily_budget, options.principal_budgets, known, oidc=oidc)
    actor = ws.identity.principal
    deployments: dict[str, Deployment] = {}
    for ref in models:
        dep = _deployment(ws, ref, options, output, actor, on_batch)
        deployments[dep.name] = dep
        _check_body_limit(dep, options.max_body)
    _one_thread()  # the pools the models loaded, before the loop's first prediction
    return deployments


def _check_body_limit(dep: Deployment, max_body: int) -> None:
    """Warn at start when a full batch of this model's largest rows outgrows --max-body."""
    need = dep.schema.max_batch * _row_bytes(dep.schema) + 16
    if need > max_body:
        log.warning(
            "%s: %d rows of up to %d bytes may need %d bytes, over --max-body %d: such"
            " requests get 413; raise --max-body or lower --max-batch",
            dep.ref,
            dep.schema.max_batch,
            _row_bytes(dep.schema),
            need,
            max_body,
        )


def _row_bytes(schema: RequestSchema) -> int:
    """The largest JSON encoding of one instance, estimated from the rules (plain strings
    without categories counted as 64 bytes, numbers as 24)."""
    size = 2
    for rule in schema.rules:
        value = 24
        if rule.categories is not None:
            value = max(len(c.encode()) for c in rule.ordered) + 2 if rule.ordered else 4
        elif rule.type == "str":
            value = 64
        size += len(rule.name.encode()) + 4 + value
    return size


def _deployment(
    ws: Workspace,
    ref: str,
    options: ServeOptions,
    output: OutputPolicy,
    actor: str,
    on_batch: Callable[[int, int, float], None] | None,
) -> Deployment:
    model, record, contract, verified, evaluation = _load(ws, ref, options, actor)
    budget = deployment_budget(
        ws, evaluation, record.ref, options.daily_budget, options.principal_budgets
    )
    config = _pipeline_config(ws, contract.config)
    data = config.data
    columns = list(getattr(model, "feature_names_in_", [])) or _input_columns(config)
    max_batch, limit = batch_limit(options)
    schema = RequestSchema.from_config(
        data.schema_,
        columns,
        max_batch=max_batch,
        drop_declared=options.drop_declared_fields,
        batch_limit=limit,
    )
    labels = label_names(model, data)  # the same names ws.models.load answers with
    served = {c: data.schema_[c] for c in schema.columns}
    profile = _training_profile(ws, contract, served, data.label.column)
    try:
        engine = choose_engine(
            ws.store.read_bytes, record.ref, contract, model, schema, prefer=options.inference
        )
    except IntegrityError as exc:
        raise IntegrityError(f"refusing to serve {ref}: {exc}") from None
    batcher: MicroBatcher[Any] = MicroBatcher(
        engine.predict,
        max_wait=options.batch_max_wait,
        max_rows=max(options.batch_max_rows, max_batch),
        on_batch=on_batch,
        thread_init=_one_thread,
        inline_rows=INLINE_ROWS if engine.name != SKLEARN else 0,
    )
    return Deployment(
        record.name,
        record.ref,
        schema,
        batcher,
        verified,
        output,
        labels,
        profile,
        str(record.digest),
        engine.name,
        engine.reason,
        budget,
    )


def _input_columns(config: Any) -> list[str]:
    """The columns a model of this pipeline file is fitted on: its numeric and categorical
    features (the features stage), else every schema column but the label."""
    features = config.features
    used = [*features.numeric.columns, *features.categorical.columns]
    return used or [c for c in config.data.schema_ if c != config.data.label.column]


def model_inputs(ws: Workspace, contract: Any) -> list[dict[str, Any]]:
    """The input schema of a VERIFIED model (``VerifiedModel.contract``), from the pipeline
    file its signed release names: each input's name, type, nullable, range or categories,
    in the model's column order. The caller has authorized ``model:read``."""
    config = _pipeline_config(ws, contract.config)
    columns = _input_columns(config)
    return RequestSchema.from_config(config.data.schema_, columns, max_batch=1).describe()


def _training_profile(ws: Workspace, contract: Any, schema: Any, label: str) -> TrainingProfile:
    """The profile of the training table its signed release names, restricted to the
    columns the model is served with."""
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
    from bastion.spec.loader import parse_pipeline

    raw = ws.store.read_bytes(digest)
    # read for its contract, not run: no environment check
    return parse_pipeline(raw, f"stored pipeline file {digest}", check_env=False)


def _load(
    ws: Workspace, ref: str, options: ServeOptions, actor: str
) -> tuple[Any, Any, Any, bool, Any]:
    """(model, record, contract, verified, evaluation). Verify-before-load unless
    --unsafe-skip-verify; the evaluation is the model's newest, verified (or None).

    The contract (pipeline file, training table) always comes from the release statement,
    whose signature is checked even with --unsafe-skip-verify; never from the record."""
    try:
        if not options.unsafe_skip_verify:
            model, verified = ws.models.load(ref)
            loaded = model, verified.record, verified.contract, True
        else:
            log.warning("UNSAFE: serving %s without verifying its signature and provenance", ref)
            ws.audit.record(actor, "serve.unsafe_skip_verify", f"model:{ref}", "ok", {})
            model, record = ws.models.unsafe_load_unverified(ref)
            loaded = model, record, ws.models.signed_contract(record), False
    except IntegrityError as exc:
        raise IntegrityError(f"refusing to serve {ref}: {exc}") from None
    # its newest signed evaluation must have passed or been overridden (EvaluationFailed)
    return (*loaded, ws.evaluations.require_passed(loaded[1]))
