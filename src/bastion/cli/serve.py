"""``bastion serve``: verify the models, then serve them over HTTPS with one uvicorn worker.

The connection guards (header-read and TLS-handshake timeout, open connections per client)
and HSTS are set here, on uvicorn, before the app sees a request. Once uvicorn listens, the
command says what it serves (:func:`bastion.serving.summary.server_summary`): each model
and version it verified, the URL, the certificate to trust, each model's inputs and the
routes; on stderr for people, or as ONE JSON line on stdout with ``--json`` (logs stay on
stderr)."""

from __future__ import annotations

import json
import logging
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bastion.cli import _common as c

if TYPE_CHECKING:
    import uvicorn

    from bastion.serving import ServerApp


def serve(
    models: Annotated[list[str], typer.Argument(help="NAME[:VERSION] of each model to serve.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(help="Port to listen on (0: a free one, printed at start).", min=0, max=65535),
    ] = 8443,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate chain (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    tls_self_signed: Annotated[
        bool, typer.Option(help="Make a development certificate for localhost in the home.")
    ] = False,
    unsafe_no_tls: Annotated[
        bool, typer.Option(help="Plain HTTP; loopback only; logged and audited.")
    ] = False,
    max_body: Annotated[int, typer.Option(help="Largest request body in bytes.", min=1)] = 1 << 20,
    max_batch: Annotated[
        int | None,
        typer.Option(
            help="Most instances per request [default: 1000, or --burst when lower];"
            " never above --burst.",
            min=1,
            show_default=False,
        ),
    ] = None,
    drop_declared_fields: Annotated[
        bool,
        typer.Option(
            help="Accept and drop request fields the data schema declares but the model does"
            " not take (data minimisation); undeclared fields are still refused. Audited."
        ),
    ] = False,
    timeout: Annotated[float, typer.Option(help="Per-request deadline in seconds.")] = 10.0,
    jwks: Annotated[
        str | None, typer.Option(help="OIDC: JWKS file or https:// URL (RS256/ES256 keys).")
    ] = None,
    issuer: Annotated[str | None, typer.Option(help="OIDC: the required 'iss'.")] = None,
    audience: Annotated[str | None, typer.Option(help="OIDC: the required 'aud'.")] = None,
    token_cache_ttl: Annotated[
        float, typer.Option(help="Seconds a token lookup is cached (0-5).", min=0, max=5)
    ] = 5.0,
    rate: Annotated[
        float, typer.Option(help="Rows per second per principal (token bucket refill).", min=0.001)
    ] = 50.0,
    burst: Annotated[
        int, typer.Option(help="Bucket size: rows a principal may send at once.", min=1)
    ] = 200,
    daily_budget: Annotated[
        str,
        typer.Option(
            help="Rows per principal per UTC day on each model (429 DAILY_BUDGET_EXHAUSTED"
            " beyond it): an integer, or auto: below the query count at which the model's"
            " signed extraction audit copied it (10000 without one). Give batch-scoring"
            " principals --principal-budget.",
            metavar="N|auto",
        ),
    ] = "auto",
    principal_budget: Annotated[
        list[str] | None,
        typer.Option(
            help="This principal's daily budget on every model instead (a bulk"
            " scorer, a load test); a JWT caller is oidc:SUB; repeatable; audited.",
            metavar="NAME=ROWS",
            show_default=False,
        ),
    ] = None,
    screen: Annotated[
        str, typer.Option(help="Rows unlike the training data: flag (audited) or reject (422).")
    ] = "flag",
    output: Annotated[
        str, typer.Option(help="What a prediction reveals: label, top_k, rounded or noised.")
    ] = "label",
    top_k: Annotated[int, typer.Option(help="Classes returned with --output top_k.", min=1)] = 1,
    decimals: Annotated[int, typer.Option(help="Decimals of returned scores.", min=0, max=6)] = 2,
    noise_scale: Annotated[
        float, typer.Option(help="Laplace scale of the noise with --output noised.")
    ] = 0.02,
    on_extraction: Annotated[
        str,
        typer.Option(
            help="On an extraction alarm: block (403 with a block id until an admin lifts it: "
            "bastion blocks lift), throttle (rate / 10) "
            "or notify (alert only). Always audited."
        ),
    ] = "block",
    header_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds a client has for the TLS handshake and for each request's headers"
            " (slowloris guard); 408 and closed after.",
            min=0.1,
            max=300,
        ),
    ] = 5.0,
    max_connections_per_client: Annotated[
        int,
        typer.Option(
            help="Open connections allowed from one client address; more get 503 and are closed.",
            min=1,
        ),
    ] = 64,
    audit_durability: Annotated[
        str,
        typer.Option(
            help="When a request's audit entry counts as written, before its answer: flush"
            " (handed to the OS: a server crash loses nothing answered; on disk within 50 ms,"
            " so a power cut can lose the last 50 ms) or fsync (on disk: nothing answered is"
            " ever lost; each answer waits for the disk).",
            metavar="flush|fsync",
        ),
    ] = "flush",
    unsafe_skip_verify: Annotated[
        bool, typer.Option(help="Load models without verifying them; logged and audited.")
    ] = False,
    home: c.Home = None,
    json_out: c.Json = False,
    debug: c.Debug = False,
) -> None:
    """Serve registered models: TLS, tokens or OIDC, schema limits, rate limits, input
    screening, output hardening and an extraction monitor; every request audited."""
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/sklearn load: see app.py
    import uvicorn

    from bastion import serving
    from bastion.errors import ConfigError
    from bastion.serving.budgets import parse_daily_budget, parse_principal_budgets
    from bastion.workspace import default_home

    if (jwks is None) != (issuer is None) or (jwks is None) != (audience is None):
        raise ConfigError("OIDC: --jwks, --issuer and --audience go together")
    where = home if home is not None else default_home()
    tls = serving.resolve_tls(
        where,
        host,
        cert=tls_cert,
        key=tls_key,
        self_signed_cert=tls_self_signed,
        unsafe_no_tls=unsafe_no_tls,
    )
    mode = "unsafe-no-tls" if tls is None else "self-signed" if tls_self_signed else "cert"
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    options = serving.ServeOptions(
        operator_token=c.token(),
        max_body=max_body,
        max_batch=max_batch,
        timeout=timeout,
        jwt=serving.JwtSettings(jwks, issuer, audience)
        if jwks is not None and issuer is not None and audience is not None
        else None,
        token_cache_ttl=token_cache_ttl,
        unsafe_skip_verify=unsafe_skip_verify,
        listen=f"{host}:{port}",
        tls=mode,
        rate=rate,
        burst=burst,
        daily_budget=parse_daily_budget(daily_budget),
        principal_budgets=parse_principal_budgets(principal_budget or ()),
        screen=screen,
        output=output,
        top_k=top_k,
        decimals=decimals,
        noise_scale=noise_scale,
        on_extraction=on_extraction,
        header_timeout=header_timeout,
        max_connections_per_client=max_connections_per_client,
        drop_declared_fields=drop_declared_fields,
        audit_durability=audit_durability,
    )
    app = serving.create_app(where, c.passphrase(), models, options=options)
    serving.bound_tls_handshake(options.header_timeout)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        workers=1,
        lifespan="on",
        access_log=False,
        log_level="info" if not debug else "debug",
        ssl_certfile=str(tls.cert) if tls is not None else None,
        ssl_keyfile=str(tls.key) if tls is not None else None,
        timeout_graceful_shutdown=10,
        server_header=False,
        headers=[serving.HSTS] if tls is not None else None,
        http=serving.guarded_protocol(
            header_timeout=options.header_timeout,
            max_per_client=options.max_connections_per_client,
        ),
        loop=serving.EVENT_LOOP,
    )
    certificate = str(tls.cert.resolve()) if tls is not None else None
    scheme = "https" if tls is not None else "http"
    announce = _announcer(app, scheme, host, certificate, json_out)
    _announcing_server(config, announce).run()


def _announcing_server(config: uvicorn.Config, announce: Callable[[int], None]) -> uvicorn.Server:
    """A uvicorn server that calls ``announce(port)`` once its sockets listen."""
    import uvicorn

    class _Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                announce(int(self.servers[0].sockets[0].getsockname()[1]))

    return _Server(config)


def _announcer(
    app: ServerApp, scheme: str, host: str, certificate: str | None, json_out: bool
) -> Callable[[int], None]:
    from bastion.serving.summary import server_summary

    def announce(port: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        summary = server_summary(
            app.deployments,
            f"{scheme}://{shown}:{port}",
            certificate,
            app.options.audit_durability,
        )
        if json_out:
            sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
            sys.stdout.flush()
            return
        sys.stderr.write(_started_text(summary, app.options.tls))
        sys.stderr.flush()

    return announce


_DURABILITY = {
    "flush": "every request's entry handed to the OS before its answer, on disk within 50 ms"
    " (--audit-durability fsync: on disk before the answer)",
    "fsync": "every request's entry on disk before its answer",
}


def _started_text(summary: dict[str, Any], tls: str) -> str:
    """The start lines for people (plain text on stderr: no markup to escape)."""
    lines = [f"bastion serve: listening on {summary['url']}"]
    if summary["certificate"]:
        why = "self-signed: give it to clients, e.g. curl --cacert" if tls == "self-signed" else ""
        lines.append(f"  certificate  {summary['certificate']}" + (f"  ({why})" if why else ""))
    lines.append(f"  audit        {_DURABILITY[summary['audit_durability']]}")
    for model in summary["models"]:
        proof = "signature and provenance verified" if model["verified"] else "NOT VERIFIED"
        lines.append(f"  model        {model['model']}  sha256:{model['sha256'][:16]}…  {proof}")
        lines.append(
            f"    predict    POST {model['predict']}"
            f"  (1 to {model['max_batch']} instances per request)"
        )
        if "inference" in model:
            why = model.get("inference_reason")
            lines.append(f"    inference  {model['inference']}" + (f" ({why})" if why else ""))
        inputs = ", ".join(f"{i['name']}:{i['type']}" for i in model["inputs"])
        lines += textwrap.wrap(
            inputs,
            96,
            initial_indent="    inputs     ",
            subsequent_indent=" " * 15,
            break_on_hyphens=False,
            break_long_words=False,
        )
        if model["drop_declared_fields"]:
            lines.append("    declared fields that are not inputs: accepted and dropped unread")
        lines += _budget_lines(model)
    routes = summary["endpoints"]
    lines.append(
        f"  openapi      GET {routes['openapi']}  (request schemas; any token unless from loopback)"
    )
    lines.append(
        f"  metrics      GET {routes['metrics']}  (Prometheus; audit:read unless from loopback)"
    )
    lines.append(
        "  health       GET /healthz (alive), /readyz (models loaded, audit log reachable)"
    )
    return "\n".join(lines) + "\n"


def _budget_lines(model: dict[str, Any]) -> list[str]:
    """The model's daily budget per principal and why; a WARNING for each budget that lets
    one principal copy it within a day."""
    rows = model.get("daily_budget")
    size = "off" if rows is None else f"{rows} rows per principal per UTC day"
    lines = _wrap(f"{size} ({model.get('budget_reason', '')})", "    budget     ")
    for name, own in sorted((model.get("principal_budgets") or {}).items()):
        lines.append(f"               {name}: {own} rows (--principal-budget)")
    for warning in model.get("budget_warnings") or []:
        lines += _wrap(f"WARNING: {model['model']}: {warning}", "  ")
    return lines


def _wrap(text: str, indent: str) -> list[str]:
    hang = " " * (15 if indent.strip() else 4)
    return textwrap.wrap(
        text, 96, initial_indent=indent, subsequent_indent=hang, break_on_hyphens=False
    )


def print_inputs(out: Any, inputs: list[dict[str, Any]]) -> None:
    """A model's input schema as a table (``bastion models show``): name, type, what is
    allowed. Names and categories come from a pipeline file: escaped for Rich."""
    from rich.table import Table

    table = Table("input", "type", "allowed", title="inputs (the fields of one instance)")
    for field in inputs:
        if "categories" in field:
            cats = field["categories"]
            allowed = ", ".join(cats[:8]) + (f", ... ({len(cats)} in all)" if len(cats) > 8 else "")
        elif "min" in field:
            low, high = field["min"], field["max"]
            allowed = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        else:
            allowed = "any"
        if field["nullable"]:
            allowed += ", or null"
        table.add_row(c.esc(field["name"]), c.esc(field["type"]), c.esc(allowed))
    out.print(table)
