"""Server-to-server HTTP API for the app's platform (API key): friend edge import."""

from __future__ import annotations

import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from server.auth import PLAYER_ID_PATTERN
from server.ops.friends import import_edges

FRIEND_IMPORT_EDGES_MAX = 1000


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _authorized(request: Request) -> JSONResponse | None:
    key = request.app.state.manor.settings.platform_key
    if not key:
        return _error(403, "PLATFORM_DISABLED", "set MANOR_PLATFORM_KEY to enable the platform API")
    header = request.headers.get("authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not hmac.compare_digest(given.encode(), key.encode()):
        return _error(401, "UNAUTHORIZED", "Authorization: Bearer <platform key>")
    return None


def _edges(body: Any, now_ms: int) -> list[tuple[str, str, int]]:
    if not isinstance(body, dict) or not isinstance(body.get("edges"), list):
        raise ValueError('body must be {"edges": [{"a", "b", "since_ms"?}, ...]}')
    edges = body["edges"]
    if len(edges) > FRIEND_IMPORT_EDGES_MAX:
        raise ValueError(f"at most {FRIEND_IMPORT_EDGES_MAX} edges per call")
    pairs = []
    for n, edge in enumerate(edges):
        if not isinstance(edge, dict) or set(edge) - {"a", "b", "since_ms"}:
            raise ValueError(f"edges[{n}]: a map with a, b and optional since_ms")
        a, b, since_ms = edge.get("a"), edge.get("b"), edge.get("since_ms", now_ms)
        if not all(isinstance(p, str) and PLAYER_ID_PATTERN.fullmatch(p) for p in (a, b)):
            raise ValueError(f"edges[{n}]: a and b must be player ids")
        if a == b:
            raise ValueError(f"edges[{n}]: a player cannot befriend themselves")
        if (
            isinstance(since_ms, bool)
            or not isinstance(since_ms, int)
            or not 0 <= since_ms <= now_ms
        ):
            raise ValueError(f"edges[{n}]: since_ms must be an epoch ms not in the future")
        assert isinstance(a, str) and isinstance(b, str)
        pairs.append((a, b, since_ms))
    return pairs


async def friends_import(request: Request) -> JSONResponse:
    """POST /v1/platform/friends: make each pair friends on both sides (idempotent)."""
    refused = _authorized(request)
    if refused is not None:
        return refused
    manor = request.app.state.manor
    try:
        pairs = _edges(await request.json(), manor.clock.now_ms())
    except ValueError as exc:
        return _error(400, "BAD_ARGS", str(exc))
    return JSONResponse({"imported": await import_edges(manor.store, pairs)})
