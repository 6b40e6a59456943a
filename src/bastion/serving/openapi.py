"""The server's OpenAPI 3.1 document (``GET /openapi.json``), built once at start.

Each deployment gets its own predict path, whose request body is the instance schema its
request contract generates (:meth:`~bastion.serving.requests.RequestSchema.instance_schema`:
the pipeline's data schema, so the document says exactly what the server accepts), and the
error answers the predict path can give.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.serving.asgi import PREDICT_PREFIX, PREDICT_SUFFIX

if TYPE_CHECKING:
    from bastion.serving.deployment import Deployment

__all__ = ["openapi_document"]

_ERRORS = (
    ("401", "missing, malformed, wrong, expired or revoked token"),
    ("403", "this token may not use this deployment, or its principal is blocked (code, block_id)"),
    ("404", "no such model"),
    ("413", "body too large"),
    ("422", "instances do not match the schema"),
    ("429", "rate limit or query budget exhausted, or throttled (code)"),
    ("503", "audit log unavailable (fail closed)"),
    ("504", "deadline exceeded"),
)


def openapi_document(deployments: dict[str, Deployment]) -> dict[str, Any]:
    """OpenAPI 3.1 for the routes, with each deployment's instance schema."""
    error = {
        "type": "object",
        "properties": {
            "error": {"type": "string"},
            "problems": {"type": "array"},
            # a control's stable reason code, and a block's id to quote (serving/blocks.py)
            "code": {"type": "string"},
            "block_id": {"type": "string"},
            "message": {"type": "string"},
        },
        "required": ["error"],
    }
    schemas: dict[str, Any] = {"Error": error}
    paths: dict[str, Any] = {}
    for name, dep in deployments.items():
        key = "".join(ch if ch.isalnum() else "_" for ch in name)
        schemas[f"{key}_instance"] = dep.schema.instance_schema()
        schemas[f"{key}_request"] = _request_schema(key, dep.schema.max_batch)
        paths[f"{PREDICT_PREFIX}{name}{PREDICT_SUFFIX}"] = {"post": _predict_operation(key, dep)}
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


def _request_schema(key: str, max_batch: int) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["instances"],
        "properties": {
            "instances": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_batch,
                "items": {"$ref": f"#/components/schemas/{key}_instance"},
            }
        },
    }


def _predict_operation(key: str, dep: Deployment) -> dict[str, Any]:
    err = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    answer = {
        "type": "object",
        "required": ["predictions", "model"],
        "properties": {
            "predictions": {
                "type": "array",
                "items": {"type": "string"} if dep.output.mode == "label" else {},
            },
            "model": {"type": "string"},
        },
    }
    return {
        "operationId": f"predict_{key}",
        "summary": f"Predict with {dep.ref}",
        "security": [{"bearer": []}],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{key}_request"}}
            },
        },
        "responses": {
            "200": {
                "description": f"One prediction per instance ({dep.output.mode}).",
                "content": {"application/json": {"schema": answer}},
            },
            **{code: {"description": why, **err} for code, why in _ERRORS},
        },
    }
