"""What a platform request body may hold: each field's kind and its limits. `check` reads
a JSON body by an endpoint's field spec (server/platform/api.py) and raises BadBody, a 400
BAD_ARGS, naming the first field that is wrong; the OpenAPI document is built from the same
kinds and limits (server/admin/openapi.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from game_rules.commerce import Item
from game_rules.ids import ID_RE
from server.auth import PLAYER_ID_PATTERN
from server.protocol import loads_json

FRIEND_IMPORT_EDGES_MAX = 1000
ORDER_LINES_MAX = 200
FEN_MAX = 10**10
PAID_KEYS = frozenset({"item_id", "paid_fen"})


@dataclass(frozen=True, slots=True)
class Field:
    """One JSON body field: a kind names its type and limits (see `check`)."""

    kind: str  # "player", "id", "name", "fen", "coins", "points", "paid_lines", ...
    required: bool = True
    doc: str = ""


class BadBody(ValueError):
    pass


def json_body(raw: bytes) -> object:
    """The JSON value of a request body; BadBody when it is none (not JSON, not UTF-8,
    nested too deep for the decoder, or a lone surrogate escape)."""
    try:
        return loads_json(raw)
    except ValueError as exc:
        raise BadBody(f"the body is not JSON: {exc}") from None


def _int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadBody(f"{name}: an integer in {low}..{high}")
    return value


def _id(name: str, value: object, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise BadBody(f"{name}: must match {pattern.pattern}")
    return value


def _lines(name: str, value: object, key: str) -> list[tuple[str, int]]:
    if not isinstance(value, list) or not 1 <= len(value) <= ORDER_LINES_MAX:
        raise BadBody(f"{name}: a list of 1..{ORDER_LINES_MAX} lines")
    out = []
    for n, line in enumerate(value):
        if not isinstance(line, dict) or set(line) != {"item_id", key}:
            raise BadBody(f"{name}[{n}]: a map with item_id and {key}")
        out.append(
            (
                _id(f"{name}[{n}].item_id", line["item_id"], ID_RE),
                _int(f"{name}[{n}].{key}", line[key], 0, FEN_MAX),
            )
        )
    return out


def _paid_lines(name: str, value: object) -> list[Item]:
    """Paid lines: item_id and paid_fen, and the item's category if the shop has one (a
    campaign's category bonus matches it)."""
    if not isinstance(value, list) or not 1 <= len(value) <= ORDER_LINES_MAX:
        raise BadBody(f"{name}: a list of 1..{ORDER_LINES_MAX} lines")
    out = []
    for n, line in enumerate(value):
        if not isinstance(line, dict) or not PAID_KEYS <= set(line) <= {*PAID_KEYS, "category"}:
            raise BadBody(f"{name}[{n}]: a map with item_id, paid_fen and an optional category")
        category = line.get("category", "")
        out.append(
            Item(
                _id(f"{name}[{n}].item_id", line["item_id"], ID_RE),
                _int(f"{name}[{n}].paid_fen", line["paid_fen"], 0, FEN_MAX),
                _id(f"{name}[{n}].category", category, ID_RE) if "category" in line else "",
            )
        )
    return out


def check(spec: dict[str, Field], body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadBody("the body must be a JSON object")
    unknown = set(body) - set(spec)
    if unknown:
        raise BadBody(f"unknown fields {sorted(unknown)}")
    out: dict[str, Any] = {}
    for name, f in spec.items():
        if name not in body:
            if f.required:
                raise BadBody(f"{name}: required")
            continue
        value = body[name]
        if f.kind == "player":
            out[name] = _id(name, value, PLAYER_ID_PATTERN)
        elif f.kind in ("id", "name"):
            out[name] = _id(name, value, ID_RE)
        elif f.kind == "fen" or f.kind in ("coins", "points"):
            out[name] = _int(name, value, 1, FEN_MAX)
        elif f.kind == "paid_lines":
            out[name] = _paid_lines(name, value)
        elif f.kind == "refund_lines":
            out[name] = _lines(name, value, "refunded_fen")
        elif f.kind == "edges":
            out[name] = value  # checked by edge_pairs, which needs the clock
        else:
            raise AssertionError(f"unknown field kind {f.kind}")
    return out


def edge_pairs(value: object, now_ms: int) -> list[tuple[str, str, int]]:
    if not isinstance(value, list) or len(value) > FRIEND_IMPORT_EDGES_MAX:
        raise BadBody(f"edges: a list of at most {FRIEND_IMPORT_EDGES_MAX}")
    pairs = []
    for n, edge in enumerate(value):
        if not isinstance(edge, dict) or set(edge) - {"a", "b", "since_ms"}:
            raise BadBody(f"edges[{n}]: a map with a, b and optional since_ms")
        a = _id(f"edges[{n}].a", edge.get("a"), PLAYER_ID_PATTERN)
        b = _id(f"edges[{n}].b", edge.get("b"), PLAYER_ID_PATTERN)
        if a == b:
            raise BadBody(f"edges[{n}]: a player cannot befriend themselves")
        since_ms = _int(f"edges[{n}].since_ms", edge.get("since_ms", now_ms), 0, now_ms)
        pairs.append((a, b, since_ms))
    return pairs
