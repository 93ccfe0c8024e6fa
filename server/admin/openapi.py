"""The OpenAPI 3.1 document of the HTTP APIs, built from the tables the server runs on:
server/platform.ENDPOINTS (body fields, results, error codes) and server/admin.ADMIN.
Served at GET /v1/openapi.json; tests/test_openapi.py checks live answers against it.
"""

from __future__ import annotations

import functools
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from game_rules.ids import ID_RE
from server.admin import api as admin
from server.auth import PLAYER_ID_PATTERN
from server.platform import commerce
from server.platform.api import BODY_BYTES_MAX, ENDPOINTS, Endpoint
from server.platform.body import FEN_MAX, FRIEND_IMPORT_EDGES_MAX, ORDER_LINES_MAX, Field

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1"
ERROR_REF = "#/components/schemas/Error"

REASONS = {
    400: "Bad request",
    401: "No or wrong key",
    403: "Refused",
    404: "Not found",
    409: "Conflicts with an earlier call",
    410: "Gone",
    413: "Body too large",
    422: "Refused by the rules or the ledger",
    500: "An unexpected server failure (a bug); retry with the same ids",
    503: "Busy, or the store is unreachable; Retry-After: 1; retry with the same ids",
}
# Every platform and admin endpoint may answer these (server/platform/api.py `guarded`).
UNAVAILABLE: dict[int, list[str]] = {500: ["INTERNAL"], 503: ["BUSY", "STORE_UNAVAILABLE"]}


def _string(pattern: str, length_max: int, doc: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "string",
        "pattern": f"^{pattern}$",
        "minLength": 1,
        "maxLength": length_max,
    }
    if doc:
        schema["description"] = doc
    return schema


def _positive(high: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": high}


def _lines(key: str) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "item_id": _string(ID_RE.pattern, 128),
        key: {"type": "integer", "minimum": 0, "maximum": FEN_MAX},
    }
    if key == "paid_fen":  # the shop's category of the item, for a campaign's category bonus
        properties["category"] = _string(ID_RE.pattern, 128)
    return {
        "type": "array",
        "minItems": 1,
        "maxItems": ORDER_LINES_MAX,
        "items": {
            "type": "object",
            "properties": properties,
            "required": ["item_id", key],
            "additionalProperties": False,
        },
    }


def field_schema(f: Field) -> dict[str, Any]:
    """One body field as JSON Schema; the limits are the ones platform.check enforces."""
    player = _string(PLAYER_ID_PATTERN.pattern, 64)
    if f.kind == "player":
        schema = player
    elif f.kind in ("id", "name"):
        schema = _string(ID_RE.pattern, 128)
    elif f.kind in ("fen", "coins", "points"):
        schema = _positive(FEN_MAX)
    elif f.kind == "paid_lines":
        schema = _lines("paid_fen")
    elif f.kind == "refund_lines":
        schema = _lines("refunded_fen")
    elif f.kind == "edges":
        schema = {
            "type": "array",
            "maxItems": FRIEND_IMPORT_EDGES_MAX,
            "items": {
                "type": "object",
                "properties": {
                    "a": player,
                    "b": player,
                    "since_ms": {"type": "integer", "minimum": 0, "description": "default: now"},
                },
                "required": ["a", "b"],
                "additionalProperties": False,
            },
        }
    else:
        raise AssertionError(f"no JSON schema for field kind {f.kind!r}")
    return {**schema, "description": f.doc} if f.doc else schema


def status_of(code: str) -> int:
    """The HTTP status server/platform/commerce.py answers a refusal code with."""
    if code.endswith("_NOT_FOUND"):
        return 404
    if code in commerce.CONFLICTS or code.endswith("_MISMATCH"):
        return 409
    if code.startswith("BAD_"):
        return 400
    return 422


def _error_response(status: int, codes: list[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "allOf": [
            {"$ref": ERROR_REF},
            {"properties": {"error": {"properties": {"code": {"enum": sorted(set(codes))}}}}},
        ]
    }
    return {
        "description": f"{REASONS.get(status, 'Error')}: {', '.join(sorted(set(codes)))}",
        "content": {"application/json": {"schema": schema}},
    }


def _errors(codes_by_status: dict[int, list[str]]) -> dict[str, Any]:
    return {str(s): _error_response(s, codes) for s, codes in sorted(codes_by_status.items())}


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def platform_operation(endpoint: Endpoint) -> dict[str, Any]:
    body = {
        "type": "object",
        "properties": {name: field_schema(f) for name, f in endpoint.body.items()},
        "required": [name for name, f in endpoint.body.items() if f.required],
        "additionalProperties": False,
    }
    result = {
        "type": "object",
        "properties": {name: {"type": kind.rstrip("?")} for name, kind in endpoint.result.items()},
        # "integer?" marks a field only a first (not a replayed) answer carries
        "required": [name for name, kind in endpoint.result.items() if not kind.endswith("?")],
    }
    codes: dict[int, list[str]] = {
        400: ["BAD_ARGS"],
        401: ["UNAUTHORIZED"],
        403: ["PLATFORM_DISABLED", "FORBIDDEN"],
        413: ["BODY_TOO_LARGE"],
        **{status: list(codes) for status, codes in UNAVAILABLE.items()},
    }
    for code in endpoint.errors:
        codes.setdefault(status_of(code), []).append(code)
    return {
        "summary": endpoint.summary,
        "operationId": "platform_" + endpoint.path.removeprefix("/v1/platform/").replace("/", "_"),
        "tags": ["platform"],
        "security": [{"platformKey": []}],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": body}},
        },
        "responses": {"200": _ok(result), **_errors(codes)},
    }


def admin_operation(endpoint: admin.AdminEndpoint) -> dict[str, Any]:
    codes: dict[int, list[str]] = {
        400: ["BAD_ARGS"],
        401: ["UNAUTHORIZED"],
        403: ["ADMIN_DISABLED"],
        **{status: list(codes) for status, codes in UNAVAILABLE.items()},
    }
    if endpoint.body is not None:
        codes[413] = ["BODY_TOO_LARGE"]
    for status, more in endpoint.errors.items():
        codes.setdefault(status, []).extend(more)
    responses: dict[str, Any] = {"200": _ok(endpoint.result), **_errors(codes)}
    if "RULES_INVALID" in codes.get(422, []):
        problems = {"type": "array", "items": {"type": "string"}}
        schema = responses["422"]["content"]["application/json"]["schema"]
        schema["allOf"].append(
            {
                "properties": {
                    "error": {"properties": {"problems": problems}, "required": ["problems"]},
                    "version": {"type": "string", "description": "the rules still in force"},
                },
                "required": ["version"],
            }
        )
    name = http_name(endpoint.path)
    operation: dict[str, Any] = {
        "summary": endpoint.summary,
        "operationId": f"{endpoint.method.lower()}_{name}",
        "tags": ["admin"],
        "security": [{"adminKey": []}],
        "responses": responses,
    }
    parameters = [
        {
            "name": p,
            "in": "path",
            "required": True,
            "schema": _string(PLAYER_ID_PATTERN.pattern, 64),
        }
        for p in ("player",)
        if "{" + p + "}" in endpoint.path
    ]
    parameters += [
        {"name": n, "in": "query", "required": False, "schema": s}
        for n, s in (endpoint.query or {}).items()
    ]
    if parameters:
        operation["parameters"] = parameters
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": not endpoint.body_optional,
            "content": {"application/json": {"schema": endpoint.body}},
        }
    return operation


def http_name(path: str) -> str:
    return path.removeprefix("/v1/").replace("/{", "_").replace("}", "").replace("/", "_")


def _health() -> dict[str, Any]:
    # "host:port (primary|replica)" -> "ok" or "unreachable: <why>": every node the store uses
    nodes = {"type": "object", "additionalProperties": {"type": "string"}}
    ready = {
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "rules_version": {"type": "string"},
            "rules_digest": {"type": "string"},
            "sockets": {"type": "integer"},
            "nodes": nodes,
        },
        "required": ["ok", "rules_version", "rules_digest", "sockets", "nodes"],
    }
    not_ready = {
        "type": "object",
        "properties": {"ok": {"const": False}, "store": {"type": "string"}, "nodes": nodes},
        "required": ["ok", "store", "nodes"],
    }
    alive = {"type": "object", "properties": {"ok": {"const": True}}, "required": ["ok"]}
    return {
        "/healthz": {
            "get": {
                "summary": "The process answers",
                "operationId": "healthz",
                "tags": ["health"],
                "responses": {"200": _ok(alive)},
            }
        },
        "/readyz": {
            "get": {
                "summary": "The process reaches the store and has rules",
                "operationId": "readyz",
                "tags": ["health"],
                "responses": {
                    "200": _ok(ready),
                    "503": _ok(not_ready, "The store is unreachable"),
                },
            }
        },
    }


@functools.cache
def document() -> dict[str, Any]:
    paths: dict[str, Any] = _health()
    for endpoint in ENDPOINTS:
        paths[endpoint.path] = {"post": platform_operation(endpoint)}
    for op in admin.ADMIN:
        paths.setdefault(op.path, {})[op.method.lower()] = admin_operation(op)
    error = {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                "required": ["code", "message"],
            }
        },
        "required": ["error"],
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Coin Manor HTTP APIs",
            "version": API_VERSION,
            "description": (
                "The platform API (server to server, API keys with scopes), the operators' "
                f"admin API (MANOR_ADMIN_KEY) and health checks. Bodies are JSON objects of at "
                f"most {BODY_BYTES_MAX} bytes; every error is {{error: {{code, message}}}}. "
                "The players' WebSocket API is described in docs/asyncapi.yaml."
            ),
        },
        "tags": [
            {"name": "platform", "description": "Server to server: rewards, checkout, exchange"},
            {"name": "admin", "description": "Operators: players, grants, reversals, rules"},
            {"name": "health", "description": "Liveness and readiness"},
        ],
        "paths": paths,
        "components": {
            "schemas": {"Error": error},
            "securitySchemes": {
                "platformKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "MANOR_PLATFORM_KEY or a key of MANOR_API_KEYS",
                },
                "adminKey": {"type": "http", "scheme": "bearer", "description": "MANOR_ADMIN_KEY"},
            },
        },
    }


async def endpoint(request: Request) -> JSONResponse:
    return JSONResponse(document())
