"""Operators' HTTP API (/v1/admin/...): the endpoint table and its routes.

Each endpoint is declared once in ADMIN (method, path, handler, body and result schemas,
error codes per status); openapi.py reads the same table. The handlers live beside it:
players.py (lookup), corrections.py (grant, reverse), rules.py (view, validate, reload).
One key, MANOR_ADMIN_KEY; without it the API is off.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from game_rules.ids import ID_RE
from server.admin.checks import (
    GRANT_COINS_MAX,
    REASON_CHARS_MAX,
    REASON_RE,
    SEQ_MAX,
    TRANSFER_ID_RE,
    Refused,
    refusal,
)
from server.admin.corrections import grant, reverse
from server.admin.players import player
from server.admin.rules import rules, rules_reload, rules_validate
from server.admin.system import system
from server.auth import PLAYER_ID_PATTERN
from server.ledger.ledger import TRANSFER_ID_BYTES_MAX
from server.platform.api import error, guarded

Handler = Callable[[Request], Awaitable[JSONResponse]]


def _str(pattern: str = "", length_max: int = 0) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if pattern:
        schema["pattern"] = f"^{pattern}$"
    if length_max:
        schema.update(minLength=1, maxLength=length_max)
    return schema


INT: dict[str, Any] = {"type": "integer"}
BOOL: dict[str, Any] = {"type": "boolean"}
PLAYER = _str(PLAYER_ID_PATTERN.pattern, 64)
REASON = {**_str(REASON_RE.pattern, REASON_CHARS_MAX), "description": "kept as the entry's ref"}


def obj(props: dict[str, Any], required: list[str] | None = None, closed: bool = False) -> Any:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    schema["required"] = list(props) if required is None else required
    if closed:
        schema["additionalProperties"] = False
    return schema


BATCHES = {"type": "array", "items": obj({"expires": _str(), "coins": INT})}
ENTRY = obj(
    {
        "seq": INT,
        "ts_ms": INT,
        "transfer_id": _str(),
        "account": _str(),
        "amount": INT,
        "balance_after": INT,
        "batches": BATCHES,
        "ref": _str(),
    }
)
COUNTS = {"type": "object", "additionalProperties": INT}
SYSTEM = obj(
    {
        "now_ms": INT,
        "rules_version": _str(),
        "sockets": INT,
        "requests": {"type": "object", "additionalProperties": COUNTS},
        "coins": obj({"minted": COUNTS, "burned": COUNTS}),
        "timers": obj({"pending": INT, "late_ms_max": INT, "fired": INT}),
        "outbox_in_flight": INT,
        "triggers": obj({"entries": INT, "backlog": INT, "dead_letters": INT}),
    }
)
RULES_VIEW = {"version": _str(), "digest": _str(), "path": _str(), "timezone": _str()}


@dataclass(frozen=True, slots=True)
class AdminEndpoint:
    method: str
    path: str
    summary: str
    run: Handler
    body: dict[str, Any] | None  # JSON schema of the body; None: no body
    result: dict[str, Any]  # JSON schema of the 200 answer
    errors: dict[int, tuple[str, ...]]  # besides 401/403 (the key) and 400/413 (the body)
    query: dict[str, dict[str, Any]] | None = None
    body_optional: bool = False


ADMIN = (
    AdminEndpoint(
        "GET",
        "/v1/admin/players/{player}",
        "A player: balance, held, debt, batches, sign-in, farm, a journal page, verify",
        player,
        None,
        obj(
            {
                "player": _str(),
                "balance": INT,
                "held": INT,
                "available": INT,
                "debt": INT,
                "batches": BATCHES,
                "signin": obj(
                    {
                        "streak": INT,
                        "signed_in_today": BOOL,
                        "next_sign_in_coins": INT,
                        "day": _str(),
                    }
                ),
                "farm": obj(
                    {"now_ms": INT, "plots": {"type": "array", "items": {"type": "object"}}}
                ),
                "journal": obj(
                    {
                        "entries": {"type": "array", "items": ENTRY},
                        "next_before_seq": {"type": ["integer", "null"]},
                        "archived_through_seq": INT,
                    }
                ),
                "verify": obj(
                    {"ok": BOOL, "entries": INT, "problems": {"type": "array", "items": _str()}}
                ),
                "rules_version": _str(),
            }
        ),
        {404: ("PLAYER_NOT_FOUND",), 503: ("BUSY",)},
        query={
            "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
            "before_seq": {"type": "integer", "minimum": 1, "maximum": SEQ_MAX},
        },
    ),
    AdminEndpoint(
        "POST",
        "/v1/admin/grant",
        "Credit coins from mint:grant in today's expiry batch (idempotent by grant_id)",
        grant,
        obj(
            {
                "player": PLAYER,
                "coins": {"type": "integer", "minimum": 1, "maximum": GRANT_COINS_MAX},
                "reason": REASON,
                "grant_id": _str(ID_RE.pattern, 128),
            },
            closed=True,
        ),
        obj(
            {
                "player": _str(),
                "grant_id": _str(),
                "transfer_id": _str(),
                "coins": INT,
                "already": BOOL,
                "balance": INT,
                "debt": INT,
            }
        ),
        {409: ("TRANSFER_MISMATCH",), 422: ("BAD_TRANSFER",)},
    ),
    AdminEndpoint(
        "POST",
        "/v1/admin/reverse",
        "Correct a transfer by posting its opposite (idempotent; spent coins become debt)",
        reverse,
        obj(
            {
                "player": PLAYER,
                "transfer_id": _str(TRANSFER_ID_RE.pattern, TRANSFER_ID_BYTES_MAX),
                "reason": REASON,
            },
            closed=True,
        ),
        obj(
            {
                "player": _str(),
                "transfer_id": _str(),
                "reversal_id": _str(),
                "reversed": {"enum": ["credit", "debit"]},
                "coins": INT,
                "moved": INT,
                "debt_added": INT,
                "already": BOOL,
                "balance": INT,
                "debt": INT,
            }
        ),
        {
            404: ("TRANSFER_NOT_FOUND",),
            409: ("NOT_REVERSIBLE",),
            410: ("ENTRY_ARCHIVED",),
            422: ("BAD_TRANSFER",),
            503: ("BUSY",),
        },
    ),
    AdminEndpoint(
        "GET",
        "/v1/admin/rules",
        "The rules in force in this process",
        rules,
        None,
        obj(RULES_VIEW),
        {},
    ),
    AdminEndpoint(
        "POST",
        "/v1/admin/rules/validate",
        "Check the configured rules file, or the TOML text given; every problem is listed",
        rules_validate,
        obj({"toml": {"type": "string"}}, required=[], closed=True),
        obj(
            {
                "ok": BOOL,
                "source": _str(),
                "problems": {"type": "array", "items": _str()},
                "version": _str(),
                "digest": _str(),
                "timezone": _str(),
            },
            required=["ok", "source", "problems"],
        ),
        {},
        body_optional=True,
    ),
    AdminEndpoint(
        "POST",
        "/v1/admin/rules/reload",
        "Read the rules file again: all or nothing; other processes are told to follow",
        rules_reload,
        None,
        obj(
            {
                **RULES_VIEW,
                "previous_version": _str(),
                "previous_digest": _str(),
                "changed": BOOL,
                "changes": {
                    "type": "array",
                    "items": _str(),
                    "description": "values that differ, as `path: old -> new`",
                },
                "processes_notified": INT,
            }
        ),
        {422: ("RULES_INVALID",)},
    ),
    AdminEndpoint(
        "GET",
        "/v1/admin/system",
        "Live figures for the console: sockets, requests by op and outcome, coins minted and "
        "burned by source, timers, outbox, push-trigger backlog and dead letters",
        system,
        None,
        SYSTEM,
        {},
    ),
)


def route(endpoint: AdminEndpoint) -> Route:
    async def answer(request: Request) -> JSONResponse:
        refused = refusal(request)
        if refused is not None:
            return refused
        try:
            return await endpoint.run(request)
        except Refused as exc:
            return error(exc.status, exc.code, exc.message)

    async def handle(request: Request) -> JSONResponse:
        return await guarded(name, answer(request))

    name = "admin" + endpoint.path.removeprefix("/v1/admin").split("/{")[0].replace("/", ".")
    return Route(endpoint.path, handle, methods=[endpoint.method], name=name)


def routes() -> list[Route]:
    return [route(endpoint) for endpoint in ADMIN]
