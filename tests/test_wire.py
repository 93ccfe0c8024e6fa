"""The WebSocket wire under uvicorn (server/transport/wire.py), over real sockets: what the
library-level clients in the other tests never do (fragments, a pipelined burst, bad
UTF-8, silence to pings and to our close, a server restart)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import msgpack
import pytest
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from starlette.applications import Starlette
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from server.protocol import CLOSE_TOO_MANY_SOCKETS
from server.settings import Settings
from server.store.embedded import EmbeddedStore, free_port
from server.transport import frames, wire
from server.transport.sockets import Disconnected
from server.transport.ws import uvicorn_options
from tests.live import Live, running, serve

WAIT_S = 5.0


def masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """One client frame (clients must mask), for what the library clients will not send."""
    mask = os.urandom(4)
    size = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", size)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def raw_socket(live: Live, player: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A handshake by hand: a client that answers nothing unless told to."""
    port = int(live.http.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /v1/ws?token={live.token(player)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: manor.v1.msgpack\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One server frame (unmasked): (opcode, payload)."""
    first, second = await asyncio.wait_for(reader.readexactly(2), WAIT_S)
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", await reader.readexactly(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    return first & 0x0F, await reader.readexactly(size)


async def sockets_drop_to(live: Live, count: int) -> None:
    for _ in range(int(WAIT_S / 0.02)):
        if live.manor.sockets == count:
            return
        await asyncio.sleep(0.02)
    assert live.manor.sockets == count


async def test_a_request_in_fragments_is_answered(live: Live) -> None:
    reader, writer = await raw_socket(live, "frag")
    request = msgpack.packb({"id": 7, "op": "state"})
    writer.write(masked(0x2, request[:3], fin=False) + masked(0x9, b"mid-ping"))
    writer.write(masked(0x0, request[3:6], fin=False) + masked(0x0, request[6:]))
    opcode, payload = await read_frame(reader)
    assert (opcode, payload) == (0xA, b"mid-ping")  # a control frame between fragments
    opcode, payload = await read_frame(reader)
    assert opcode == 0x2 and msgpack.unpackb(payload)["id"] == 7
    writer.close()


async def test_a_pipelined_burst_is_answered_in_order(live: Live) -> None:
    """More requests at once than the wire buffers: reading pauses, none is lost."""
    reader, writer = await raw_socket(live, "burst")
    count = wire.INBOUND_MESSAGES_MAX * 10
    writer.write(
        b"".join(masked(0x2, msgpack.packb({"id": n, "op": "state"})) for n in range(count))
    )
    ids = []
    while len(ids) < count:
        _, payload = await read_frame(reader)
        message = msgpack.unpackb(payload)
        if "id" in message:  # pushes (none expected here) carry no id
            assert message["ok"], message
            ids.append(message["id"])
    assert ids == list(range(count))
    writer.close()


async def test_a_frame_cut_between_reads_and_a_ping_among_requests_are_read_in_order(
    live: Live,
) -> None:
    """The wire reads whole data frames itself and hands websockets' parser anything else
    (a frame cut short by a read, a control frame) with all that follows."""
    reader, writer = await raw_socket(live, "cut")
    first, second, third, fourth = (
        masked(0x2, msgpack.packb({"id": n, "op": "state", "args": {"pad": "x" * 150}}))
        for n in range(4)
    )
    writer.write(first + second[:9])
    await writer.drain()
    await asyncio.sleep(0.05)  # the rest of the second frame comes in another read
    writer.write(second[9:] + third + masked(0x9, b"ping") + fourth)
    replies, pongs = [], []
    while len(replies) < 4 or not pongs:
        opcode, payload = await read_frame(reader)
        if opcode == 0xA:
            pongs.append(payload)
        else:
            replies.append(msgpack.unpackb(payload))
    assert pongs == [b"ping"]
    assert [(r["id"], r["error"]["code"]) for r in replies] == [(n, "BAD_ARGS") for n in range(4)]
    writer.close()


async def test_bad_utf8_in_a_text_frame_closes_1007(live: Live) -> None:
    reader, writer = await raw_socket(live, "utf")
    writer.write(masked(0x1, b"\xff\xfe not utf-8"))
    opcode, payload = await read_frame(reader)
    assert opcode == 0x8 and struct.unpack("!H", payload[:2])[0] == 1007
    await sockets_drop_to(live, 0)
    writer.close()


async def test_other_paths_are_not_found(live: Live) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{live.url}/v1/nope?token={live.token('p')}"):
            pass
    assert refused.value.response.status_code == 404


async def test_a_client_silent_to_pings_is_closed_1011(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path
) -> None:
    options = {"ws_ping_interval": 0.2, "ws_ping_timeout": 0.2}
    async with serve(redis_server.url, tmp_path, ws_options=options) as live:
        answering = await live.connect("pong")  # the library client answers pings itself
        reader, writer = await raw_socket(live, "mute")
        opcode, _ = await read_frame(reader)
        assert opcode == 0x9  # the ping, never answered
        opcode, payload = await read_frame(reader)
        assert opcode == 0x8 and struct.unpack("!H", payload[:2])[0] == 1011
        await sockets_drop_to(live, 1)
        assert await answering.call("state")  # several pings later, still open
        await answering.close()
        writer.close()


async def test_a_client_silent_to_our_close_is_cut_after_the_timeout(
    redis: Redis,
    redis_server: EmbeddedStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wire, "CLOSE_TIMEOUT_S", 0.3)
    async with serve(redis_server.url, tmp_path, sockets_per_player_max=1) as live:
        first = await live.connect("full")
        reader, writer = await raw_socket(live, "full")  # a second socket: refused with 4409
        opcode, payload = await read_frame(reader)
        assert opcode == 0x8 and struct.unpack("!H", payload[:2])[0] == CLOSE_TOO_MANY_SOCKETS
        assert await asyncio.wait_for(reader.read(), WAIT_S) == b""  # TCP closed, unanswered
        writer.close()
        await first.close()


async def test_a_server_restart_closes_open_sockets_1012(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path
) -> None:
    async with serve(redis_server.url, tmp_path) as live:
        socket = await connect(
            f"{live.url}/v1/ws?token={live.token('bye')}", subprotocols=["manor.v1.msgpack"]
        )
    await asyncio.wait_for(socket.wait_closed(), WAIT_S)
    assert socket.close_code == 1012


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65_535, 65_536, 70_000])
@pytest.mark.parametrize("text", [False, True])
def test_our_frames_are_the_bytes_websockets_writes(size: int, text: bool) -> None:
    payload = b"x" * size
    message = payload.decode() if text else payload
    opcode = Opcode.TEXT if text else Opcode.BINARY
    assert frames.frame_bytes(message) == Frame(opcode, payload).serialize(mask=False)


def websockets_reads(data: bytes, size_max: int | None) -> list[tuple[bytes, bool]]:
    """The data messages websockets' own parser reads from `data` (frames whole and final)."""
    parser = ServerProtocol(state=State.OPEN, max_size=size_max)
    parser.receive_data(data)
    return [
        (bytes(event.data), event.opcode is Opcode.TEXT)
        for event in parser.events_received()
        if isinstance(event, Frame)
    ]


CLIENT_FRAMES = st.one_of(
    st.tuples(st.sampled_from([Opcode.BINARY, Opcode.TEXT]), st.binary(max_size=300)),
    st.tuples(st.sampled_from([Opcode.PING, Opcode.PONG]), st.binary(max_size=20)),
)


@settings(max_examples=300, deadline=None)
@given(
    sent=st.lists(CLIENT_FRAMES, max_size=8),
    cut=st.integers(0, 40),
    size_max=st.sampled_from([None, 200]),
)
def test_the_data_frames_read_without_websockets_are_what_websockets_reads(
    sent: list[tuple[Opcode, bytes]], cut: int, size_max: int | None
) -> None:
    """frames.read_data_frames takes whole final data frames up to the first other thing
    (a control frame, one over the limit, one the read cut short): websockets' parser reads
    the same messages from those bytes, and the rest starts at a frame boundary."""
    data = b"".join(Frame(opcode, payload).serialize(mask=True) for opcode, payload in sent)
    data = data[: max(0, len(data) - cut)]
    messages, at = frames.read_data_frames(data, size_max)
    assert messages == websockets_reads(data[:at], size_max)
    boundaries, offset = [0], 0
    for opcode, payload in sent:
        offset += len(Frame(opcode, payload).serialize(mask=True))
        boundaries.append(offset)
    assert at in boundaries
    if at < len(data):  # stopped at something else: a control frame, a big or a cut one
        stopped = sent[boundaries.index(at)]
        frame_end = boundaries[boundaries.index(at) + 1]
        assert (
            stopped[0] in (Opcode.PING, Opcode.PONG)
            or frame_end > len(data)
            or (size_max is not None and len(stopped[1]) > size_max)
        )


def test_other_frames_stop_the_read_without_websockets() -> None:
    payload = b"x" * 10
    whole = Frame(Opcode.BINARY, payload).serialize(mask=True)
    assert frames.read_data_frames(whole + whole, None) == ([(payload, False)] * 2, 2 * len(whole))
    for other in (
        Frame(Opcode.BINARY, payload, fin=False).serialize(mask=True),  # a fragment
        Frame(Opcode.BINARY, payload).serialize(mask=False),  # unmasked: websockets refuses it
        bytes([whole[0] | 0x40]) + whole[1:],  # RSV1: no extension was agreed here
        Frame(Opcode.BINARY, b"y" * 70_000).serialize(mask=True),  # a 64-bit length
        Frame(Opcode.CLOSE, b"\x03\xe8").serialize(mask=True),
    ):
        assert frames.read_data_frames(whole + other + whole, None) == (
            [(payload, False)],
            len(whole),
        )


async def test_an_unusual_upgrade_gets_websockets_own_answer(live: Live) -> None:
    """What upgrade.py does not read (here a version websockets refuses) goes to websockets:
    its 400, and the connection ends."""
    port = int(live.http.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /v1/ws?token={live.token('old')} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n".encode()
    )
    answer = await asyncio.wait_for(reader.read(), WAIT_S)  # up to the close
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert b"Sec-WebSocket-Version" in answer  # websockets names the header it refused
    writer.close()


class Corked(wire.Wire):
    """A socket that corks, sends, and uncorks (or closes) when the test says so."""

    release: asyncio.Event
    close_code: int | None = None  # set: close while corked instead of sending more

    async def serve(self) -> None:
        self.accept(None)
        self.cork()
        self.send_now(b"push")
        await Corked.release.wait()
        if Corked.close_code is not None:
            await self.close(Corked.close_code)
        else:
            self.send_now(b"reply")
            self.uncork()
        with contextlib.suppress(Disconnected):
            while True:
                await self.receive()


@contextlib.asynccontextmanager
async def corked_socket(close_code: int | None) -> AsyncIterator[asyncio.StreamReader]:
    Corked.release, Corked.close_code = asyncio.Event(), close_code
    port = free_port()
    config = uvicorn.Config(
        Starlette(), host="127.0.0.1", port=port, ws=Corked, lifespan="off", log_level="warning"
    )
    async with running(config):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /corked HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
        assert head.startswith(b"HTTP/1.1 101"), head
        yield reader
        writer.write(masked(0x8, struct.pack("!H", 1000)))
        writer.close()


async def test_corked_frames_leave_together_at_uncork() -> None:
    """A credit's push comes while its request is answered: it waits for the reply and
    leaves with it, in one write (so one read takes both)."""
    async with corked_socket(None) as reader:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.2)  # held: nothing on the wire yet
        Corked.release.set()
        data = await asyncio.wait_for(reader.read(65_536), WAIT_S)
        assert data == frames.frame_bytes(b"push") + frames.frame_bytes(b"reply")


async def test_our_close_writes_the_corked_frames_before_it() -> None:
    async with corked_socket(4000) as reader:
        Corked.release.set()
        assert await read_frame(reader) == (0x2, b"push")
        opcode, payload = await read_frame(reader)
        assert (opcode, struct.unpack("!H", payload[:2])[0]) == (0x8, 4000)


def test_the_app_is_served_with_httptools_parsing_http() -> None:
    """h11 (uvicorn's pure-Python fallback) parsed each upgrade in 250k more instructions:
    httptools is a dependency and the options name it. On a fresh clone this fails if the
    dependency is dropped (uvicorn's `auto` would fall back to h11, or the named parser
    would not load)."""
    config = uvicorn.Config(Starlette(), **uvicorn_options(Settings()))
    config.load()
    assert config.http_protocol_class is HttpToolsProtocol
