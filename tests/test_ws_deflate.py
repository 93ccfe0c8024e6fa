"""permessage-deflate: off unless MANOR_WS_DEFLATE asks for it (an idle compressing socket
costs about 35 KB more, and every small frame pays the compressor)."""

from __future__ import annotations

import time
from pathlib import Path

import websockets

from server.auth import issue_token
from server.store.cluster import EmbeddedCluster
from server.store.embedded import EmbeddedStore
from tests.live import SECRET, serve


async def extensions_offered_back(url: str) -> str | None:
    token = issue_token(SECRET, "squeezy", int(time.time()), 60)
    async with websockets.connect(
        f"{url}/v1/ws?token={token}", subprotocols=["manor.v1.json"], compression="deflate"
    ) as ws:
        return ws.response.headers.get("Sec-WebSocket-Extensions")


async def test_a_client_offering_deflate_gets_plain_frames_by_default(
    redis_server: EmbeddedStore | EmbeddedCluster, tmp_path: Path
) -> None:
    async with serve(redis_server.url, tmp_path) as live:
        assert await extensions_offered_back(live.url) is None


async def test_ws_deflate_turns_it_on(
    redis_server: EmbeddedStore | EmbeddedCluster, tmp_path: Path
) -> None:
    async with serve(redis_server.url, tmp_path, ws_deflate=True) as live:
        assert "permessage-deflate" in (await extensions_offered_back(live.url) or "")
