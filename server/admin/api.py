"""Operators' HTTP API (/v1/admin/...): look a player up, grant coins, correct a transfer by
reversing it, check and reload the rules. One key, MANOR_ADMIN_KEY; without it the API is off.

Corrections are new transfers against the same system account, never edits: the journal
keeps both the mistake and its reversal. Each endpoint is declared once in ADMIN (method,
path, body and result schemas, error codes per status); server/openapi.py reads the table.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import msgpack
from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from game_rules import Rules, RulesError, business_day, expiry_batch, parse_rules, sign_in_view
from game_rules.commerce import ID_RE
from server.auth import PLAYER_ID_PATTERN
from server.ledger.commit import Commit, apply
from server.ledger.ledger import TRANSFER_ID_BYTES_MAX, Entry, Transfer, Wallet
from server.ledger.verify import verify
from server.ops.account import LEDGER_PAGE_DEFAULT
from server.ops.components import pack, signin_of
from server.ops.farm import plots_view
from server.pipeline import COMMIT_ATTEMPTS_MAX, Services, Snapshot
from server.platform.api import BODY_BYTES_MAX, error
from server.rulebook import Rulebook, check_rules
from server.store.keys import PlayerKeys

log = logging.getLogger(__name__)

GRANT_COINS_MAX = 1_000_000  # per grant: a bigger correction is several grants, on purpose
REASON_CHARS_MAX = 200
REASON_RE = re.compile(r"[^\x00-\x1f\x7f]{1,200}")
TRANSFER_ID_RE = re.compile(r"[!-~]{1,200}")
SEQ_MAX = 2**53
DIGITS_RE = re.compile(r"[0-9]{1,16}")
REVERSAL_PREFIX = "reverse:"
RULES_CHANNEL = "m:rules:reload"  # every process listens; the message is the new digest
JOURNAL_READ_ATTEMPTS_MAX = 3  # compaction may trim between the wallet read and the page


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _services(request: Request) -> Services:
    services: Services = request.app.state.manor.dispatcher.services
    return services


def _refusal(request: Request) -> JSONResponse | None:
    key: str = request.app.state.manor.settings.admin_key
    if not key:
        return error(403, "ADMIN_DISABLED", "set MANOR_ADMIN_KEY to enable the admin API")
    header = request.headers.get("authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not hmac.compare_digest(given.encode(), key.encode()):
        return error(401, "UNAUTHORIZED", "Authorization: Bearer <admin key>")
    return None


async def _body(request: Request, allow_empty: bool = False) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > BODY_BYTES_MAX:
        raise Refused(413, "BODY_TOO_LARGE", f"bodies are limited to {BODY_BYTES_MAX} bytes")
    if allow_empty and not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise Refused(400, "BAD_ARGS", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise Refused(400, "BAD_ARGS", "the body must be a JSON object")
    return body


def _fields(body: dict[str, Any], checks: dict[str, Callable[[str, object], Any]]) -> list[Any]:
    unknown = set(body) - set(checks)
    if unknown:
        raise Refused(400, "BAD_ARGS", f"unknown fields {sorted(unknown)}")
    missing = [name for name in checks if name not in body]
    if missing:
        raise Refused(400, "BAD_ARGS", f"{missing[0]}: required")
    return [check(name, body[name]) for name, check in checks.items()]


def _matching(pattern: re.Pattern[str]) -> Callable[[str, object], str]:
    def check(name: str, value: object) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise Refused(400, "BAD_ARGS", f"{name}: must match {pattern.pattern}")
        return value

    return check


def _coins(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= GRANT_COINS_MAX:
        raise Refused(400, "BAD_ARGS", f"{name}: an integer in 1..{GRANT_COINS_MAX}")
    return value


def _query_int(request: Request, name: str, low: int, high: int, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not DIGITS_RE.fullmatch(raw) or not low <= int(raw) <= high:
        raise Refused(400, "BAD_ARGS", f"{name}: an integer in {low}..{high}")
    return int(raw)


_player = _matching(PLAYER_ID_PATTERN)
_reason = _matching(REASON_RE)


def todays_batch(services: Services, now_ms: int) -> Any:
    rules = services.rulebook.rules
    return expiry_batch(business_day(now_ms, rules.tz), rules.expiry)


# --- the player --------------------------------------------------------------------------------


async def journal_page(
    services: Services, keys: PlayerKeys, limit: int, before: int | None
) -> dict[str, Any]:
    """Newest first, like the `ledger` op, but aware of compaction: entries up to the wallet's
    checkpoint (`archived_through_seq`) live in the archive files, not in Redis."""
    store = services.store
    for _ in range(JOURNAL_READ_ATTEMPTS_MAX):
        wallet = Wallet.from_hash(await store.call("HGETALL", keys.wallet))
        ck = wallet.checkpoint.seq
        top = wallet.seq if before is None else min(before - 1, wallet.seq)
        low = max(ck + 1, top - limit + 1)
        page: dict[str, Any] = {"entries": [], "next_before_seq": None, "archived_through_seq": ck}
        if top < low:
            return page
        raw = await store.call("LRANGE", keys.journal, low - ck - 1, top - ck - 1)
        entries = [Entry.decode(r) for r in raw]
        if [e.seq for e in entries] != list(range(low, top + 1)):
            continue  # compaction trimmed the journal in between: read again
        page["entries"] = [e.public() for e in reversed(entries)]
        page["next_before_seq"] = low if low > ck + 1 else None
        return page
    raise Refused(503, "BUSY", "the journal kept changing; retry")


async def player(request: Request) -> JSONResponse:
    services = _services(request)
    pid = _player("player", request.path_params["player"])
    page_max = services.settings.ledger_page_max
    limit = _query_int(request, "limit", 1, page_max, min(LEDGER_PAGE_DEFAULT, page_max))
    before = _query_int(request, "before_seq", 1, SEQ_MAX, None)
    assert limit is not None
    keys = PlayerKeys(pid)
    state_raw, wallet_raw = await services.store.call_many(
        ("HGETALL", keys.state), ("HGETALL", keys.wallet)
    )
    if not state_raw and not wallet_raw:
        raise Refused(404, "PLAYER_NOT_FOUND", f"no state and no wallet for player {pid!r}")
    wallet = Wallet.from_hash(wallet_raw)
    snapshot = Snapshot(int(state_raw.get(b"ver", 0)), state_raw, wallet.balance)
    now_ms = services.clock.now_ms()
    rules = services.rulebook.rules
    view = sign_in_view(signin_of(snapshot), rules, now_ms)
    report = await verify(cast(Redis, services.store.redis), pid)
    return JSONResponse(
        {
            "player": pid,
            "balance": wallet.balance,
            "held": wallet.held,
            "available": wallet.balance - wallet.held,
            "debt": wallet.debt,
            "batches": wallet.by_batch(),
            "signin": {
                "streak": view.streak,
                "signed_in_today": view.signed_today,
                "next_sign_in_coins": view.next_coins,
                "day": view.day.isoformat(),
            },
            "farm": {"now_ms": now_ms, "plots": plots_view(snapshot, services, now_ms)},
            "journal": await journal_page(services, keys, limit, before),
            "verify": {"ok": report.ok, "entries": report.entries, "problems": report.problems},
            "rules_version": rules.version,
        }
    )


# --- grant and reverse -------------------------------------------------------------------------


async def grant(request: Request) -> JSONResponse:
    services = _services(request)
    pid, coins, reason, grant_id = _fields(
        await _body(request),
        {"player": _player, "coins": _coins, "reason": _reason, "grant_id": _matching(ID_RE)},
    )
    now_ms = services.clock.now_ms()
    transfer = Transfer(
        f"grant:{grant_id}", "c", coins, "mint:grant", todays_batch(services, now_ms), reason
    )
    done = await apply(services.store, PlayerKeys(pid), Commit(transfers=[transfer]), now_ms)
    if done.status == "TRANSFER_MISMATCH":
        raise Refused(409, "TRANSFER_MISMATCH", "this grant id was used with other coins")
    if done.status not in ("ok", "exists"):
        raise Refused(422, done.status, f"the ledger refused: {done.status}")
    return JSONResponse(
        {
            "player": pid,
            "grant_id": grant_id,
            "transfer_id": transfer.transfer_id,
            "coins": coins,
            "already": done.status == "exists",
            "balance": done.balance,
            "debt": done.debt,
        }
    )


@dataclass(frozen=True, slots=True)
class Posting:
    """What the txids hash says of a transfer: `<kind>|<coins>|<account>|<seq>`."""

    kind: str
    coins: int
    account: str
    seq: int

    @classmethod
    def parse(cls, raw: bytes) -> Posting:
        kind, coins, *account, seq = raw.decode().split("|")
        return cls(kind, int(coins), "|".join(account), int(seq))


def _reversal_reply(
    pid: str, transfer_id: str, record: dict[str, Any], already: bool, balance: int, debt: int
) -> dict[str, Any]:
    return {
        "player": pid,
        "transfer_id": transfer_id,
        "reversal_id": REVERSAL_PREFIX + transfer_id,
        "reversed": "credit" if record["kind"] == "c" else "debit",
        "coins": record["coins"],
        "moved": record["moved"],
        "debt_added": record["debt_added"],
        "already": already,
        "balance": balance,
        "debt": debt,
    }


async def reverse(request: Request) -> JSONResponse:
    """Post the opposite of a transfer. A credit reversed takes back what the player still
    has available and books the rest as debt (as a refund does); a debit reversed credits
    the coins back in today's batch. Idempotent: a record `reversal:<id>` is set with it."""
    services = _services(request)
    store = services.store
    pid, transfer_id, reason = _fields(
        await _body(request),
        {"player": _player, "transfer_id": _matching(TRANSFER_ID_RE), "reason": _reason},
    )
    keys = PlayerKeys(pid)
    reversal_id = REVERSAL_PREFIX + transfer_id
    field = f"reversal:{transfer_id}"
    for _ in range(COMMIT_ATTEMPTS_MAX):
        seen, wallet_raw, record_raw = await store.call_many(
            ("HGET", keys.txids, transfer_id),
            ("HGETALL", keys.wallet),
            ("HGET", keys.records, field),
        )
        wallet = Wallet.from_hash(wallet_raw)
        if record_raw is not None:
            record = msgpack.unpackb(record_raw, raw=False)
            body = _reversal_reply(pid, transfer_id, record, True, wallet.balance, wallet.debt)
            return JSONResponse(body)
        if seen is None:
            raise Refused(404, "TRANSFER_NOT_FOUND", f"player {pid} has no transfer {transfer_id}")
        posting = Posting.parse(seen)
        if transfer_id.startswith(REVERSAL_PREFIX):
            raise Refused(409, "NOT_REVERSIBLE", "a reversal is not reversed; post a grant")
        if posting.account == "clawback" and transfer_id.endswith(":debt"):
            raise Refused(409, "NOT_REVERSIBLE", "a debt repayment: reverse the credit it follows")
        if len(reversal_id.encode()) > TRANSFER_ID_BYTES_MAX:
            raise Refused(409, "NOT_REVERSIBLE", "the id is too long to name its reversal")
        ck = wallet.checkpoint.seq
        raw = (
            None
            if posting.seq <= ck
            else await store.call("LINDEX", keys.journal, posting.seq - ck - 1)
        )
        if raw is None:
            raise Refused(410, "ENTRY_ARCHIVED", f"entry seq {posting.seq} is in the archive only")
        entry = Entry.decode(raw)
        if entry.seq != posting.seq or entry.transfer_id != transfer_id:
            continue  # compaction trimmed the journal in between: read again
        now_ms = services.clock.now_ms()
        if posting.kind == "c":
            moved = min(posting.coins, max(0, wallet.balance - wallet.held))
            transfers = (
                [Transfer(reversal_id, "d", moved, posting.account, ref=reason)] if moved else []
            )
            debt_added = posting.coins - moved
        else:
            batch = todays_batch(services, now_ms)
            transfers = [Transfer(reversal_id, "c", posting.coins, posting.account, batch, reason)]
            moved, debt_added = posting.coins, 0
        record = {
            "kind": posting.kind,
            "coins": posting.coins,
            "moved": moved,
            "debt_added": debt_added,
            "reason": reason,
            "at_ms": now_ms,
        }
        commit = Commit(
            transfers=transfers, debt_add=debt_added, records=[(field, b"", pack(record))]
        )
        done = await apply(store, keys, commit, now_ms)
        if done.status in ("RECORD_CONFLICT", "INSUFFICIENT_FUNDS", "exists"):
            continue  # another reversal or a spend came first: read again
        if done.status != "ok":
            raise Refused(422, done.status, f"the ledger refused: {done.status}")
        return JSONResponse(
            _reversal_reply(pid, transfer_id, record, False, done.balance, done.debt)
        )
    raise Refused(503, "BUSY", "the wallet kept changing; retry")


# --- rules -------------------------------------------------------------------------------------


def _rules_view(rulebook: Rulebook) -> dict[str, Any]:
    rules = rulebook.rules
    return {
        "version": rules.version,
        "digest": rules.digest,
        "path": rulebook.source,
        "timezone": rules.timezone,
    }


async def rules(request: Request) -> JSONResponse:
    return JSONResponse(_rules_view(_services(request).rulebook))


async def rules_validate(request: Request) -> JSONResponse:
    """The configured file, or `{"toml": "..."}`: ok with its version, or every problem."""
    rulebook = _services(request).rulebook
    body = await _body(request, allow_empty=True)
    unknown = set(body) - {"toml"}
    if unknown:
        raise Refused(400, "BAD_ARGS", f"unknown fields {sorted(unknown)}")
    text = body.get("toml")
    if text is not None and not isinstance(text, str):
        raise Refused(400, "BAD_ARGS", "toml: a string")
    try:
        checked: Rules = (
            check_rules(rulebook.path) if text is None else parse_rules(text, source="<body>")
        )
    except RulesError as exc:
        source = exc.source
        return JSONResponse({"ok": False, "source": source, "problems": exc.problems})
    return JSONResponse(
        {
            "ok": True,
            "source": rulebook.source if text is None else "<body>",
            "problems": [],
            "version": checked.version,
            "digest": checked.digest,
            "timezone": checked.timezone,
        }
    )


async def rules_reload(request: Request) -> JSONResponse:
    """Swap the rules whole or not at all, then tell every other process (RULES_CHANNEL)."""
    services = _services(request)
    rulebook = services.rulebook
    before = rulebook.rules
    try:
        after = rulebook.reload()
    except RulesError as exc:
        return JSONResponse(
            {
                "error": {
                    "code": "RULES_INVALID",
                    "message": f"{rulebook.source}: {len(exc.problems)} problem(s); "
                    f"version {before.version} stays in force",
                    "problems": exc.problems,
                },
                "version": before.version,
            },
            status_code=422,
        )
    log.warning(
        "rules reloaded by an operator: %s (%s) -> %s (%s)",
        before.version,
        before.digest,
        after.version,
        after.digest,
    )
    notified = await services.store.call("PUBLISH", RULES_CHANNEL, after.digest)
    return JSONResponse(
        {
            **_rules_view(rulebook),
            "previous_version": before.version,
            "previous_digest": before.digest,
            "changed": after.digest != before.digest,
            "processes_notified": int(notified),
        }
    )


def reload_follower(rulebook: Rulebook) -> Callable[[bytes], None]:
    """A fan-out sink for RULES_CHANNEL: another process reloaded the rules to `digest`;
    reload ours from our own MANOR_RULES unless we have them already."""

    def follow(digest: bytes) -> None:
        wanted = digest.decode()
        if rulebook.rules.digest == wanted:
            return
        try:
            got = rulebook.reload()
        except RulesError as exc:
            log.error("rules reload notice (%s): ours stay in force: %s", wanted, exc)
            return
        if got.digest != wanted:
            log.error(
                "rules reload notice: another process has %s, our %s has %s",
                wanted,
                rulebook.source,
                got.digest,
            )
        else:
            log.warning("rules reloaded on notice: %s (%s)", got.version, got.digest)

    return follow


# --- the table ---------------------------------------------------------------------------------


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
        {409: ("TRANSFER_MISMATCH",)},
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
                "processes_notified": INT,
            }
        ),
        {422: ("RULES_INVALID",)},
    ),
)


def route(endpoint: AdminEndpoint) -> Route:
    async def handle(request: Request) -> JSONResponse:
        refused = _refusal(request)
        if refused is not None:
            return refused
        try:
            return await endpoint.run(request)
        except Refused as exc:
            return error(exc.status, exc.code, exc.message)

    name = "admin" + endpoint.path.removeprefix("/v1/admin").split("/{")[0].replace("/", ".")
    return Route(endpoint.path, handle, methods=[endpoint.method], name=name)


def routes() -> list[Route]:
    return [route(endpoint) for endpoint in ADMIN]
