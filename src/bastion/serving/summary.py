"""What ``bastion serve`` says once it listens (:func:`server_summary`), and what it
records before: the ``serve.start`` audit entry (:func:`audit_start`).

Each model and version it verified (with its digest), the URL, the certificate to trust,
each model's inputs and routes, and each deployment's daily budget per principal with why
(``auto``: sized from the model's signed extraction audit, :mod:`.budgets`) and a warning
for every budget at or above the query count that copied the model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bastion.serving.asgi import PREDICT_PREFIX, PREDICT_SUFFIX
from bastion.serving.deployment import batch_limit

if TYPE_CHECKING:
    from bastion.serving.deployment import Deployment, ServeOptions
    from bastion.workspace import Workspace

__all__ = ["ROUTES", "audit_start", "server_summary"]

log = logging.getLogger("bastion.serving")

ROUTES = ("/openapi.json", "/metrics", "/healthz", "/readyz")


def server_summary(
    deployments: Mapping[str, Deployment],
    url: str,
    certificate: str | None,
    audit_durability: str,
) -> dict[str, Any]:
    """The start summary (``--json`` prints it as is; the CLI's text is made from it)."""
    models = [
        {
            "name": dep.name,
            "model": dep.ref,
            "sha256": dep.digest,
            "verified": dep.verified,
            "predict": f"{url}{PREDICT_PREFIX}{dep.name}{PREDICT_SUFFIX}",
            "max_batch": dep.schema.max_batch,
            "drop_declared_fields": dep.schema.drop_declared,
            "inference": dep.inference,
            **({"inference_reason": dep.inference_reason} if dep.inference_reason else {}),
            "daily_budget": dep.budget.rows,
            "budget_reason": dep.budget.reason,
            "extraction_queries_90pct": dep.budget.copied_at,
            "principal_budgets": dict(dep.budget.principals),
            "budget_warnings": list(dep.budget.warnings),
            "inputs": dep.schema.describe(),
        }
        for dep in deployments.values()
    ]
    return {
        "url": url,
        "certificate": certificate,
        "audit_durability": audit_durability,
        "models": models,
        "endpoints": {route.strip("/").split(".")[0]: url + route for route in ROUTES},
    }


def audit_start(
    ws: Workspace, deployments: Mapping[str, Deployment], options: ServeOptions
) -> None:
    """The ``serve.start`` entry (and ``serve.unsafe_no_tls`` when serving plain HTTP)."""
    actor = ws.identity.principal
    ws.audit.set_durability(options.audit_durability)  # this entry on, as the requests'
    ws.audit.record(
        actor,
        "serve.start",
        "server",
        "ok",
        {
            "models": [d.ref for d in deployments.values()],
            "listen": options.listen,
            "tls": options.tls,
            "audit_durability": options.audit_durability,
            "verified": all(d.verified for d in deployments.values()),
            "rate": options.rate,
            "burst": options.burst,
            "daily_budget": options.daily_budget,
            "principal_budgets": dict(sorted(options.principal_budgets.items())),
            "budgets": {d.ref: d.budget.to_json() for d in deployments.values()},
            "budget_warnings": [
                f"{d.ref}: {w}" for d in deployments.values() for w in d.budget.warnings
            ],
            "screen": options.screen,
            "output": options.output,
            "on_extraction": options.on_extraction,
            "max_body": options.max_body,
            "max_batch": batch_limit(options)[0],
            "drop_declared_fields": options.drop_declared_fields,
            "inference": {d.ref: d.inference for d in deployments.values()},
        },
    )
    if options.tls == "unsafe-no-tls":
        log.warning("UNSAFE: serving plain HTTP (loopback only)")
        ws.audit.record(actor, "serve.unsafe_no_tls", "server", "ok", {"listen": options.listen})
