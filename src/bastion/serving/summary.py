"""What ``bastion serve`` says once it listens (:func:`server_summary`).

Each model and version it verified (with its digest), the URL, the certificate to trust,
each model's inputs and routes, and each deployment's daily budget per principal with why
(``auto``: sized from the model's signed extraction audit, :mod:`.budgets`) and a warning
for every budget at or above the query count that copied the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bastion.serving.asgi import PREDICT_PREFIX, PREDICT_SUFFIX

if TYPE_CHECKING:
    from bastion.serving.deployment import Deployment

__all__ = ["ROUTES", "server_summary"]

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
