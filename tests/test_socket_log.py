"""One INFO line per socket when it ends (server/transport/ws.py): who, from where, how it
ended and what it carried; never the token."""

from __future__ import annotations

import asyncio
import logging

import pytest

from server.protocol import CLOSE_TOO_MANY_SOCKETS
from tests.live import Live

LOGGER = "server.transport.ws"
WAIT_S = 5.0


async def socket_lines(caplog: pytest.LogCaptureFixture, count: int) -> list[logging.LogRecord]:
    """The socket lines once `count` are there (a socket's end is logged after its close)."""
    for _ in range(int(WAIT_S / 0.02)):
        lines = [r for r in caplog.records if r.name == LOGGER and r.msg.startswith("socket ")]
        if len(lines) >= count:
            return lines
        await asyncio.sleep(0.02)
    raise AssertionError(f"expected {count} socket lines, got {caplog.records}")


async def test_a_socket_s_end_is_one_line_with_its_player_code_and_counts(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    client = await live.connect("ann")
    tablet = await live.connect("ann")
    await client.call("state")  # attached
    await tablet.call("sign_in")  # its `balance` push goes to the client
    await client.next_push()
    await client.call("state")
    await client.close()
    (line,) = await socket_lines(caplog, 1)
    await tablet.close()
    assert line.levelno == logging.INFO
    fields = {k: getattr(line, k) for k in ("player", "close_code", "requests", "pushes")}
    assert fields == {"player": "ann", "close_code": 1000, "requests": 2, "pushes": 1}
    assert line.subprotocol == "manor.v1.msgpack"
    assert line.peer.startswith("127.0.0.1:") and line.duration_s >= 0
    text = line.getMessage()
    assert "ann" in text and "1000" in text and live.token("ann") not in text


async def test_a_socket_over_the_player_s_limit_is_logged_with_its_code(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    limit = live.settings.sockets_per_player_max
    clients = [await live.connect("bea") for _ in range(limit)]
    extra = await live.connect("bea")
    await asyncio.wait_for(extra.socket.wait_closed(), WAIT_S)
    (line,) = await socket_lines(caplog, 1)
    assert (line.player, line.close_code, line.requests) == ("bea", CLOSE_TOO_MANY_SOCKETS, 0)
    for client in clients:
        await client.close()
