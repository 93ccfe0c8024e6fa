"""Client process that holds idle sockets: `python -m bench.hold_client --url ... --count N`.

Opens `count` authenticated sockets (`concurrency` handshakes at a time), prints
`{"ready": <open sockets>, ...}`, waits for a line on stdin (or its end), closes them all
and prints `{"closed": ...}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from bench.clients import raise_fd_limit, wait_for_line
from bench.loadgen import FRAME_BYTES_MAX
from bench.serve import JWT_SECRET
from server.auth import issue_token
from server.protocol import SUBPROTOCOL_MSGPACK

OPEN_TIMEOUT_S = 60.0
ERRORS_KEPT_MAX = 5


async def open_one(url: str, player_id: str, now_s: int) -> ClientConnection:
    token = issue_token(JWT_SECRET, player_id, now_s)
    return await connect(
        f"{url}?player={player_id}",  # the relay baseline reads it; the server ignores it
        subprotocols=[Subprotocol(SUBPROTOCOL_MSGPACK)],
        additional_headers={"Authorization": f"Bearer {token}"},
        compression=None,
        proxy=None,
        ping_interval=None,
        max_size=FRAME_BYTES_MAX,
        open_timeout=OPEN_TIMEOUT_S,
    )


async def open_all(
    url: str, players: list[str], concurrency: int
) -> tuple[list[ClientConnection], list[str]]:
    """Every player's socket, `concurrency` handshakes at a time; (sockets, errors)."""
    gate = asyncio.Semaphore(concurrency)
    now_s = int(time.time())
    errors: list[str] = []

    async def one(player_id: str) -> ClientConnection | None:
        async with gate:
            try:
                return await open_one(url, player_id, now_s)
            except Exception as exc:  # noqa: BLE001 - counted; the others stay open
                errors.append(repr(exc))
                return None

    opened = await asyncio.gather(*(one(p) for p in players))
    return [s for s in opened if s is not None], errors


async def run(args: argparse.Namespace) -> None:
    players = [f"{args.player_prefix}{i:06d}" for i in range(args.first, args.first + args.count)]
    started_s = time.monotonic()
    sockets, errors = await open_all(args.url, players, args.concurrency)
    ready: dict[str, Any] = {
        "ready": len(sockets),
        "errors": len(errors),
        "error_samples": errors[:ERRORS_KEPT_MAX],
        "open_s": time.monotonic() - started_s,
    }
    print(json.dumps(ready), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, wait_for_line, sys.stdin)
    # Still open? A server that dropped idle sockets would show here.
    alive = sum(s.close_code is None for s in sockets)
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    print(json.dumps({"closed": len(sockets), "alive_at_end": alive}), flush=True)


def main(argv: list[str] | None = None) -> None:
    top = argparse.ArgumentParser(prog="python -m bench.hold_client")
    top.add_argument("--url", required=True)
    top.add_argument("--first", type=int, default=0)
    top.add_argument("--count", type=int, required=True)
    top.add_argument("--concurrency", type=int, default=200)
    top.add_argument("--player-prefix", default="idle-")
    args = top.parse_args(argv)
    raise_fd_limit(args.count)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
