"""Who may open a socket: the checks of /v1/ws's upgrade request (path, subprotocol, token,
resume point), each refusal a plain-text HTTP answer. Runs before the socket exists, for our
wire and the ASGI route alike (ws.py's serve_socket calls it)."""

from __future__ import annotations

import re
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote

from server.auth import AuthError, verify_token
from server.protocol import pick_subprotocol
from server.transport.sockets import Socket
from server.transport.upgrade import Upgrade

SOCKET_PATH = "/v1/ws"
SEQ_PATTERN = re.compile(r"[0-9]{1,15}")


def bearer_token(request: Upgrade, query: dict[str, str]) -> str | None:
    headers = request.values("authorization")
    header = headers[0] if headers else ""
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return query.get("token")


def offered_subprotocols(request: Upgrade) -> list[str]:
    return [
        name.strip()
        for header in request.values("sec-websocket-protocol")
        for name in header.split(",")
        if name.strip()
    ]


class Admission(NamedTuple):
    """What the handshake decided: who the socket is, how it speaks, where it resumes."""

    player_id: str
    subprotocol: str
    offered: bool  # the client named subprotocols: the answer names the one we took
    since_seq: int | None
    entry_seq: int | None  # the balance the app holds: none at or below it is sent


def admit(manor: Any, wire: Socket) -> Admission | None:
    """Check the upgrade request, refusing it with a plain-text HTTP answer when it fails;
    the request is read here only, so it is not kept for the socket's life."""
    request = wire.request
    if request is None:
        return None
    raw_path, _, query_string = request.path.partition("?")
    if unquote(raw_path) != SOCKET_PATH:
        wire.deny(404, "Not Found")
        return None
    if manor is None:  # a socket before the lifespan finished, or a server without one
        wire.deny(503, "the server is starting")
        return None
    offered = offered_subprotocols(request)
    subprotocol = pick_subprotocol(offered)
    if subprotocol is None:
        wire.deny(400, "unsupported subprotocol: use manor.v1.msgpack or manor.v1.json")
        return None
    query = dict(parse_qsl(query_string, keep_blank_values=True))
    token = bearer_token(request, query)
    if not token:
        wire.deny(401, "missing token: Authorization: Bearer <jwt> or ?token=")
        return None
    try:
        player_id = verify_token(manor.jwt_secret, token, manor.settings.jwt_leeway_s)
    except AuthError as exc:
        wire.deny(403, str(exc))
        return None
    counts: list[int | None] = []
    for name in ("since_seq", "entry_seq"):
        value = query.get(name)
        if value is not None and not SEQ_PATTERN.fullmatch(value):
            wire.deny(400, f"{name} must be a non-negative integer")
            return None
        counts.append(None if value is None else int(value))
    since_seq, entry_seq = counts
    return Admission(player_id, subprotocol, bool(offered), since_seq, entry_seq)
