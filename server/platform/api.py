"""Server-to-server HTTP API for the app's platform: API keys with scopes.

Each endpoint is declared once (path, scope, body fields, result fields; the field kinds and
their limits are in server/platform/body.py); the same table
validates requests and builds the OpenAPI document (server/admin/openapi.py), so the document
cannot drift from what the server accepts.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from server.ops.friends import import_edges
from server.pipeline import STORE_DOWN_ERRORS, Services
from server.platform import commerce
from server.platform.body import BadBody, Field, check, edge_pairs, json_body
from server.platform.growth import report_growth
from server.platform.mall import payment as mall_payment
from server.platform.tasks import task_done
from server.store.store import StoreBusy

log = logging.getLogger(__name__)

BODY_BYTES_MAX = 65_536
RETRY_AFTER_S = 1  # the Retry-After of a 503: the store is down or overloaded


@dataclass(frozen=True, slots=True)
class Endpoint:
    path: str
    scope: str
    summary: str
    body: dict[str, Field]
    result: dict[str, str]  # field -> JSON type ("integer?": not in every answer), for OpenAPI
    run: Callable[[Services, dict[str, Any]], Awaitable[dict[str, Any]]]
    errors: tuple[str, ...] = field(default_factory=tuple)


# --- the endpoints ---------------------------------------------------------------------------


async def _friends(services: Services, body: dict[str, Any]) -> dict[str, Any]:
    pairs = edge_pairs(body["edges"], services.clock.now_ms())
    rules = services.rulebook.rules
    imported, skipped = await import_edges(services.store, pairs, rules.farm.friends_max)
    return {"imported": imported, "skipped": skipped}


async def _order_paid(services: Services, body: dict[str, Any]) -> dict[str, Any]:
    return await commerce.order_paid(services, body["player"], body["order_id"], body["items"])


async def _order_refund(services: Services, body: dict[str, Any]) -> dict[str, Any]:
    return await commerce.order_refund(
        services, body["player"], body["order_id"], body["refund_id"], body["items"]
    )


async def _review(services: Services, body: dict[str, Any]) -> dict[str, Any]:
    return await commerce.review(
        services, body["player"], body["review_id"], body["order_paid_fen"]
    )


async def _quote(services: Services, body: dict[str, Any]) -> dict[str, Any]:
    return await commerce.quote(services, body["player"], body["order_fen"])


async def _reserve(services: Services, body: dict[str, Any]) -> dict[str, Any]:
    return await commerce.reserve(
        services, body["player"], body["order_id"], body["order_fen"], body["coins"]
    )


async def _post(services: Services, body: dict[str, Any]) -> dict[str, Any]:
    return await commerce.settle(services, body["player"], body["order_id"], "post")


async def _void(services: Services, body: dict[str, Any]) -> dict[str, Any]:
    return await commerce.settle(services, body["player"], body["order_id"], "void")


async def _exchange(services: Services, body: dict[str, Any]) -> dict[str, Any]:
    return await commerce.exchange(
        services, body["player"], body["partner"], body["txn_id"], body["points"]
    )


async def _mall_payment(services: Services, body: dict[str, Any]) -> dict[str, Any]:
    return await mall_payment(
        services, body["player"], body["order_id"], body["payment_id"], body["result"]
    )


async def _task_done(services: Services, body: dict[str, Any]) -> dict[str, Any]:
    return await task_done(services, body["player"], body["task"], body["event_id"])


async def _growth(services: Services, body: dict[str, Any]) -> dict[str, Any]:
    return await report_growth(services, body["player"], body["event_id"], body["event"])


# What post and void answer: the hold's state after the step, and the wallet once it moved.
HOLD_STEP = {
    "order_id": "string",
    "state": "string",
    "already": "boolean",
    "coins": "integer?",
    "balance": "integer?",
    "available": "integer?",
}

P = Field("player", doc="the player id")
ORDER = Field("id", doc="the platform's order id")
ENDPOINTS = (
    Endpoint(
        "/v1/platform/friends",
        "friends",
        "Import friend edges from the social graph",
        {"edges": Field("edges", doc="[{a, b, since_ms?}], at most 1000")},
        {"imported": "integer", "skipped": "array"},
        _friends,
    ),
    Endpoint(
        "/v1/platform/orders/paid",
        "orders",
        "A paid order earns coins (idempotent)",
        {"player": P, "order_id": ORDER, "items": Field("paid_lines", doc="[{item_id, paid_fen}]")},
        {"order_id": "string", "coins": "integer", "already": "boolean", "balance": "integer"},
        _order_paid,
        ("BAD_ORDER", "ORDER_MISMATCH"),
    ),
    Endpoint(
        "/v1/platform/orders/refund",
        "orders",
        "A refund takes back what the refunded money earned; spent coins become debt",
        {
            "player": P,
            "order_id": ORDER,
            "refund_id": Field("id"),
            "items": Field("refund_lines", doc="[{item_id, refunded_fen}]"),
        },
        {
            "order_id": "string",
            "refund_id": "string",
            "coins": "integer",
            "already": "boolean",
            "taken": "integer?",
            "debt_added": "integer?",
            "debt": "integer?",
            "balance": "integer?",
        },
        _order_refund,
        ("ORDER_NOT_FOUND", "BAD_REFUND", "REFUND_MISMATCH"),
    ),
    Endpoint(
        "/v1/platform/reviews",
        "reviews",
        "A review earns coins by the order's amount",
        {"player": P, "review_id": Field("id"), "order_paid_fen": Field("fen")},
        {"review_id": "string", "coins": "integer", "already": "boolean", "balance": "integer"},
        _review,
        ("TRANSFER_MISMATCH",),
    ),
    Endpoint(
        "/v1/platform/checkout/quote",
        "checkout",
        "How many coins this order may use (100 coins = 1 yuan, at most 50%)",
        {"player": P, "order_fen": Field("fen")},
        {
            "order_fen": "integer",
            "coins_max": "integer",
            "value_fen": "integer",
            "balance": "integer",
            "available": "integer",
        },
        _quote,
        (),
    ),
    Endpoint(
        "/v1/platform/checkout/reserve",
        "checkout",
        "Hold coins for an order until post, void or the timeout",
        {"player": P, "order_id": ORDER, "order_fen": Field("fen"), "coins": Field("coins")},
        {
            "order_id": "string",
            "coins": "integer",
            "expires_ms": "integer",
            "already": "boolean",
            "available": "integer?",
        },
        _reserve,
        (
            "COINS_OVER_CAP",
            "INSUFFICIENT_FUNDS",
            "HOLD_MISMATCH",
            "HOLD_POSTED",
            "HOLD_VOIDED",
            "HOLDS_FULL",
        ),
    ),
    Endpoint(
        "/v1/platform/checkout/post",
        "checkout",
        "Capture the held coins (once)",
        {"player": P, "order_id": ORDER},
        HOLD_STEP,
        _post,
        ("HOLD_NOT_FOUND", "HOLD_VOIDED", "HOLD_EXPIRED"),
    ),
    Endpoint(
        "/v1/platform/checkout/void",
        "checkout",
        "Release the held coins (once)",
        {"player": P, "order_id": ORDER},
        HOLD_STEP,
        _void,
        ("HOLD_NOT_FOUND", "HOLD_POSTED"),
    ),
    Endpoint(
        "/v1/platform/exchange",
        "exchange",
        "Partner points become coins (China Mobile 1:1.5, at most 100 points per call)",
        {"player": P, "partner": Field("name"), "txn_id": Field("id"), "points": Field("points")},
        {
            "partner": "string",
            "txn_id": "string",
            "points": "integer",
            "coins": "integer",
            "already": "boolean",
            "balance": "integer",
        },
        _exchange,
        ("UNKNOWN_PARTNER", "POINTS_OVER_LIMIT", "TRANSFER_MISMATCH"),
    ),
    Endpoint(
        "/v1/platform/mall/payment",
        "checkout",
        "The shop's payment result for a mall order's cash part: paid posts, failed voids",
        {
            "player": P,
            "order_id": Field("id", doc="the mall order id (mall_buy's order.order_id)"),
            "payment_id": Field("id", doc="the shop's payment id"),
            "result": Field("name", doc='"paid" or "failed"'),
        },
        {
            "order_id": "string",
            "state": "string",
            "payment_id": "string",
            "already": "boolean",
            "coins": "integer",
            "cash_fen": "integer",
        },
        _mall_payment,
        ("ORDER_NOT_FOUND", "ORDER_EXPIRED", "ORDER_CANCELLED", "ORDER_PAID", "PAYMENT_MISMATCH"),
    ),
    Endpoint(
        "/v1/platform/tasks/done",
        "tasks",
        "A task completion (share, photo review, invite, first order) pays coins (idempotent)",
        {
            "player": P,
            "task": Field("name"),
            "event_id": Field("id", doc="the platform's event id"),
        },
        {
            "task": "string",
            "event_id": "string",
            "coins": "integer",
            "already": "boolean",
            "balance": "integer",
            "base_coins": "integer?",
            "level_coins": "integer?",
            "campaign": "string?",
            "campaign_coins": "integer?",
            "growth": "integer?",
            "done_today": "integer?",
            "done_month": "integer?",
        },
        _task_done,
        ("UNKNOWN_TASK", "TASK_NOT_REPORTED", "TASK_DAY_CAP_REACHED", "TASK_MONTH_CAP_REACHED"),
    ),
    Endpoint(
        "/v1/platform/growth",
        "growth",
        "A growth event (review, share, real-name...) adds growth value (idempotent)",
        {
            "player": P,
            "event_id": Field("id", doc="the platform's event id"),
            "event": Field("name", doc="a growth event of the rules, e.g. review"),
        },
        {
            "event_id": "string",
            "event": "string",
            "added": "integer",
            "capped": "string?",
            "value": "integer",
            "pending": "integer",
            "level": "object",
            "already": "boolean",
        },
        _growth,
        ("UNKNOWN_GROWTH_EVENT", "GROWTH_EVENT_MISMATCH", "GROWTH_REPORTS_OVER_LIMIT"),
    ),
)


# --- keys and the HTTP glue --------------------------------------------------------------------


def error(status: int, code: str, message: str) -> JSONResponse:
    response = JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
    if status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


async def guarded(op: str, answer: Awaitable[JSONResponse]) -> JSONResponse:
    """`answer`, or the JSON error an exception inside it stands for: the store down or
    overloaded is a 503 with Retry-After (the call may have been applied before the store
    died: a retry with the same ids finds out, and never applies it twice); anything else
    unexpected is a 500 INTERNAL, logged."""
    try:
        return await answer
    except STORE_DOWN_ERRORS as exc:
        log.warning("%s: store unavailable: %r", op, exc)
        return error(503, "STORE_UNAVAILABLE", "the store is unreachable; retry with the same ids")
    except StoreBusy:
        return error(503, "BUSY", "the server is overloaded; retry with the same ids")
    except ClientDisconnect:
        raise
    except Exception:
        log.exception("%s failed", op)
        return error(500, "INTERNAL", "the server failed; retry with the same ids")


def _caller(request: Request, scope: str) -> JSONResponse | None:
    keys: dict[str, tuple[str, frozenset[str]]] = request.app.state.manor.api_keys
    if not keys:
        return error(403, "PLATFORM_DISABLED", "set MANOR_PLATFORM_KEY or MANOR_API_KEYS")
    header = request.headers.get("authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else ""
    for key, (_, scopes) in keys.items():
        if hmac.compare_digest(given.encode(), key.encode()):
            if scope not in scopes:
                return error(403, "FORBIDDEN", f"this key lacks the {scope} scope")
            return None
    return error(401, "UNAUTHORIZED", "Authorization: Bearer <API key>")


def route(endpoint: Endpoint) -> Route:
    async def answer(request: Request) -> JSONResponse:
        refused = _caller(request, endpoint.scope)
        if refused is not None:
            return refused
        raw = await request.body()
        if len(raw) > BODY_BYTES_MAX:
            return error(413, "BODY_TOO_LARGE", f"bodies are limited to {BODY_BYTES_MAX} bytes")
        try:
            body = check(endpoint.body, json_body(raw))
            result = await endpoint.run(request.app.state.manor.dispatcher.services, body)
        except BadBody as exc:
            return error(400, "BAD_ARGS", str(exc))
        except commerce.Refused as exc:
            return error(exc.status, exc.code, exc.message)
        return JSONResponse(result)

    async def handle(request: Request) -> JSONResponse:
        return await guarded(endpoint.path, answer(request))

    return Route(endpoint.path, handle, methods=["POST"])


def routes() -> list[Route]:
    return [route(endpoint) for endpoint in ENDPOINTS]
