"""What every operator endpoint checks first: the admin key, the JSON body, each field.

A failed check raises Refused, which the route turns into a JSON error with a stable code.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from server.auth import PLAYER_ID_PATTERN
from server.pipeline import Services
from server.platform.api import BODY_BYTES_MAX, error
from server.protocol import loads_json

GRANT_COINS_MAX = 1_000_000  # per grant: a bigger correction is several grants, on purpose
REASON_CHARS_MAX = 200
REASON_RE = re.compile(r"[^\x00-\x1f\x7f]{1,200}")
TRANSFER_ID_RE = re.compile(r"[!-~]{1,200}")
SEQ_MAX = 2**53
DIGITS_RE = re.compile(r"[0-9]{1,16}")


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def services_of(request: Request) -> Services:
    services: Services = request.app.state.manor.dispatcher.services
    return services


def refusal(request: Request) -> JSONResponse | None:
    key: str = request.app.state.manor.settings.admin_key
    if not key:
        return error(403, "ADMIN_DISABLED", "set MANOR_ADMIN_KEY to enable the admin API")
    header = request.headers.get("authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not hmac.compare_digest(given.encode(), key.encode()):
        return error(401, "UNAUTHORIZED", "Authorization: Bearer <admin key>")
    return None


async def read_body(request: Request, allow_empty: bool = False) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > BODY_BYTES_MAX:
        raise Refused(413, "BODY_TOO_LARGE", f"bodies are limited to {BODY_BYTES_MAX} bytes")
    if allow_empty and not raw.strip():
        return {}
    try:
        body = loads_json(raw)
    except ValueError as exc:
        raise Refused(400, "BAD_ARGS", f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise Refused(400, "BAD_ARGS", "the body must be a JSON object")
    return body


def fields(body: dict[str, Any], checks: dict[str, Callable[[str, object], Any]]) -> list[Any]:
    unknown = set(body) - set(checks)
    if unknown:
        raise Refused(400, "BAD_ARGS", f"unknown fields {sorted(unknown)}")
    missing = [name for name in checks if name not in body]
    if missing:
        raise Refused(400, "BAD_ARGS", f"{missing[0]}: required")
    return [check(name, body[name]) for name, check in checks.items()]


def matching(pattern: re.Pattern[str]) -> Callable[[str, object], str]:
    def check(name: str, value: object) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise Refused(400, "BAD_ARGS", f"{name}: must match {pattern.pattern}")
        return value

    return check


def coins_field(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= GRANT_COINS_MAX:
        raise Refused(400, "BAD_ARGS", f"{name}: an integer in 1..{GRANT_COINS_MAX}")
    return value


def query_int(request: Request, name: str, low: int, high: int, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not DIGITS_RE.fullmatch(raw) or not low <= int(raw) <= high:
        raise Refused(400, "BAD_ARGS", f"{name}: an integer in {low}..{high}")
    return int(raw)


player_field = matching(PLAYER_ID_PATTERN)
reason_field = matching(REASON_RE)
