"""The WebSocket wire: our own asyncio protocol under uvicorn (its `ws=` option).

Why not uvicorn's WebSocket protocol and Starlette's WebSocket: there an idle socket holds
~26 KB of Python objects before the app runs (uvicorn's protocol object, the parsed HTTP
request kept for the socket's life, an ASGI message Queue and Event, Starlette's task
frames through the router: `python -m bench.socket_memory`, docs/benchmark.md), and every
frame travels as an ASGI message dict through two queues. Here a socket holds its
transport, a websockets `ServerProtocol` in frame mode and a few fields: fragments, control
frames, the size limit, the close handshake, permessage-deflate and every refusal stay the
library's (websockets' sans-I/O layer); only the common client frame, one whole final
masked data frame read at a frame boundary, is unmasked here (frames.read_data_frames),
and the HTTP request is dropped once the handshake is answered.

uvicorn reads the HTTP request, sees the Upgrade and replays its bytes here; the
handshake (handshake.py) reads them and writes the answer; frames.py writes each message
the server sends as one frame; keepalive.py times the pings. Then the subclass's `serve`
runs in one task per socket and talks to the wire through `request`, `accept`, `deny`,
`receive`, `send` and `close` (server/transport/ws.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, cast

from websockets.exceptions import InvalidState
from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol

from server.transport.frames import frame_bytes, read_data_frames, reads_data_frames
from server.transport.handshake import Handshake
from server.transport.keepalive import Keepalive
from server.transport.sockets import CODE_ABNORMAL, Disconnected, Message
from server.transport.upgrade import Upgrade

log = logging.getLogger(__name__)

# Messages read but not yet taken by the handler: past this, the transport stops reading
# (one read may still hold more: its frames are parsed together, at most a read's bytes).
INBOUND_MESSAGES_MAX = 4
CORKED_FRAMES_MAX = 32  # frames cork() holds before it writes them anyway
CLOSE_TIMEOUT_S = 10.0  # our close frame waits this long for the client's before the TCP close

CODE_GOING_AWAY = 1012  # the server restarts (uvicorn's shutdown)
CODE_INVALID_DATA = 1007
CODE_KEEPALIVE = 1011


def _settle(waiter: asyncio.Future[Any] | None, result: Any = None) -> None:
    if waiter is not None and not waiter.done():
        if isinstance(result, BaseException):
            waiter.set_exception(result)
        else:
            waiter.set_result(result)


class Wire(asyncio.Protocol):
    """One WebSocket, from uvicorn's upgrade to the TCP close. Subclasses define `serve`."""

    # Slots: one of these lives per socket (asyncio's protocol bases have empty slots).
    __slots__ = (
        "_waiter",
        "app_state",
        "close_sent",
        "close_timer",
        "config",
        "conn",
        "connections",
        "corked",
        "ended",
        "fragments",
        "fragments_text",
        "handshake",
        "inbound",
        "keepalive",
        "read_paused",
        "tasks",
        "transport",
        "writable",
    )

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any]) -> None:
        self.config = config
        self.connections: set[Any] = server_state.connections
        self.tasks: set[asyncio.Task[None]] = server_state.tasks
        self.app_state = app_state
        self.transport: asyncio.Transport | None = None
        self.handshake: Handshake | None = Handshake(
            config.ws_per_message_deflate, config.ws_max_size
        )  # until answered
        self.conn: ServerProtocol | None = None  # frame mode, from the 101 on
        self.inbound: deque[Message] | None = None  # made by the first message not yet taken
        self.writable: asyncio.Future[None] | None = None  # while the transport's buffer is full
        self.ended: int | None = None  # the close code once the socket has ended
        self.close_sent = False
        self.close_timer: asyncio.TimerHandle | None = None
        self.keepalive: Keepalive | None = None  # from the 101 on
        self.fragments: list[bytes] | None = None  # a message in several frames, until its last
        self.fragments_text = False
        self.read_paused = False
        self.corked: list[bytes] | None = None  # frames held by cork(), until uncork()
        self._waiter: asyncio.Future[Message] | None = None  # the handler's receive, waiting

    # asyncio's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.connections.add(self)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None:
            self._read_handshake(data)
            return
        if reads_data_frames(conn):
            messages, at = read_data_frames(data, conn.max_message_size)
            for payload, text in messages:
                self._message(payload, text)
            if at == len(data) or self.ended is not None:
                return
            data = data[at:]
        conn.receive_data(data)
        for event in conn.events_received():
            if isinstance(event, Frame):
                self._frame(event)
        self._flush()
        if conn.parser_exc is not None:  # a protocol error: websockets queued the close frame
            close = conn.close_sent
            self._end(close.code if close is not None else CODE_ABNORMAL)
            self._close_transport()

    def eof_received(self) -> None:
        return None  # the transport closes itself; connection_lost ends the socket

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        self._end(CODE_ABNORMAL)
        _settle(self.writable)  # a send waiting for room finds the socket ended

    def pause_writing(self) -> None:
        if self.writable is None:
            self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        writable, self.writable = self.writable, None
        _settle(writable)

    def shutdown(self) -> None:
        """uvicorn is stopping: a close frame 1012 (restart) to an open socket."""
        if self.request is not None:
            self.deny(500, "the server is stopping")
            return
        conn = self.conn
        if conn is not None and not self.close_sent and self.ended is None:
            self._send_close(conn, CODE_GOING_AWAY)
        self._end(CODE_GOING_AWAY)
        self._close_transport()

    async def serve(self) -> None:
        """The socket's life after a well-formed upgrade request: `accept` or `deny` it,
        then `receive` and `send` until Disconnected. Runs in the socket's one task."""
        raise NotImplementedError

    # The handshake

    @property
    def peer(self) -> str:
        transport = self.transport
        address = None if transport is None else transport.get_extra_info("peername")
        return f"{address[0]}:{address[1]}" if address else "-"

    @property
    def request(self) -> Upgrade | None:
        """The upgrade request while its handshake waits for `accept` or `deny`."""
        return self.handshake.request if self.handshake is not None else None

    def _read_handshake(self, data: bytes) -> None:
        handshake = self.handshake
        if handshake is None or handshake.request is not None or self.close_sent:
            return  # being answered: a client sends nothing before the 101
        answer, ended = handshake.read(data)
        if answer:
            self._write(answer)
        if ended:  # websockets refused the request (and wrote why)
            self.handshake = None
            self.close_sent = True
            self._close_transport()
        elif handshake.request is not None:  # well-formed: `serve` answers it, in its task
            task = asyncio.get_running_loop().create_task(self._run())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _run(self) -> None:
        try:
            await self.serve()
        except Disconnected:
            pass
        except Exception:
            log.exception("socket handler failed")
            if self.request is not None:
                self.deny(500, "Internal Server Error")
        if self.request is not None:  # the handler never answered the handshake
            log.error("socket handler returned without answering the handshake")
            self.deny(500, "Internal Server Error")
        if self.close_timer is None:  # no closing handshake under way: end the TCP connection
            self._close_transport()

    def accept(self, subprotocol: str | None) -> None:
        """Answer the handshake with 101 (and the subprotocol, if any); frames may flow."""
        handshake = self.handshake
        if handshake is None or handshake.request is None or self.ended is not None:
            raise Disconnected(self.ended if self.ended is not None else CODE_ABNORMAL)
        answer, self.conn = handshake.accept(subprotocol)
        self.handshake = None
        self._write(answer)
        self.keepalive = Keepalive(self, self.config.ws_ping_interval, self.config.ws_ping_timeout)
        self.keepalive.start()

    def deny(self, status: int, text: str) -> None:
        """Refuse the handshake with a plain-text HTTP answer and end the connection."""
        handshake = self.handshake
        if handshake is None or handshake.request is None:
            return
        # The path without its query: a ?token= stays out of the log.
        log.info("socket refused: %d %s", status, handshake.request.path.partition("?")[0])
        self._write(handshake.refuse(status, text))
        self.handshake = None
        self.close_sent = True
        self._end(CODE_ABNORMAL)
        self._close_transport()

    # Frames in

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.BINARY or opcode is Opcode.TEXT:
            if frame.fin:
                self._message(cast(bytes, frame.data), opcode is Opcode.TEXT)
            else:
                self.fragments = [cast(bytes, frame.data)]
                self.fragments_text = opcode is Opcode.TEXT
        elif opcode is Opcode.CONT:
            if self.fragments is None:
                return  # websockets refuses a stray continuation before it gets here
            self.fragments.append(cast(bytes, frame.data))
            if frame.fin:
                data, self.fragments = b"".join(self.fragments), None
                self._message(data, self.fragments_text)
        elif opcode is Opcode.CLOSE:
            self._closed_by_peer()
        elif opcode is Opcode.PONG and self.keepalive is not None:
            self.keepalive.pong(bytes(frame.data))
        # PING: websockets has queued the pong; _flush sends it.

    def _message(self, data: bytes, text: bool) -> None:
        if self.close_sent or self.ended is not None:
            return  # past our close: read on only for the client's close frame
        message: Message = data
        if text:
            try:
                message = data.decode()
            except UnicodeDecodeError:
                self._fail(CODE_INVALID_DATA, "invalid UTF-8")
                return
        waiter = self._waiter
        if waiter is not None and not waiter.done():  # nothing is queued while one waits
            waiter.set_result(message)
            return
        inbound = self.inbound
        if inbound is None:
            inbound = self.inbound = deque()
        inbound.append(message)
        if len(inbound) >= INBOUND_MESSAGES_MAX and not self.read_paused:
            self.read_paused = True
            if self.transport is not None:
                self.transport.pause_reading()

    def _closed_by_peer(self) -> None:
        close = self.conn.close_rcvd if self.conn is not None else None
        if self.close_sent:  # the client's answer to our close: the closing handshake is done
            if self.close_timer is not None:
                self.close_timer.cancel()
                self.close_timer = None
            self._close_transport()
            return
        # websockets has queued the echo of the close frame; the server ends TCP after it.
        self.close_sent = True
        self._end(close.code if close is not None else CODE_ABNORMAL)
        self._flush()
        self._close_transport()

    # The handler's side

    async def receive(self) -> Message:
        """The next message, in order; raises Disconnected once the socket has ended."""
        inbound = self.inbound
        if inbound:
            message = inbound.popleft()
            if self.read_paused and len(inbound) < INBOUND_MESSAGES_MAX:
                self.read_paused = False
                if self.transport is not None and not self.transport.is_closing():
                    self.transport.resume_reading()
            return message
        if self.ended is not None:
            raise Disconnected(self.ended)
        waiter: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        try:
            return await waiter
        finally:
            self._waiter = None

    def send_now(self, message: Message) -> bool:
        """Send at once if the transport has room, without a coroutine or a task; False (and
        nothing sent) while the client reads too slowly or once the socket has ended."""
        if self.writable is not None or self.ended is not None or self.close_sent:
            return False
        transport, conn = self.transport, self.conn
        if transport is None or conn is None or transport.is_closing():
            return False
        if conn.extensions:  # deflate: websockets encodes the frame
            try:
                if isinstance(message, bytes):
                    conn.send_binary(message)
                else:
                    conn.send_text(message.encode())
            except InvalidState:
                return False
            self._flush()  # not corked: deflate is off by default, and rare
            return True
        corked = self.corked
        if corked is None:
            transport.write(frame_bytes(message))
            return True
        corked.append(frame_bytes(message))
        if len(corked) >= CORKED_FRAMES_MAX:
            self._write_corked()
        return True

    def cork(self) -> None:
        """Hold what send_now sends until uncork, to write it in one call: the pushes that
        come while a request is answered (a credit's `balance` push) leave with the reply,
        one syscall and one TCP segment instead of two. Our close and the async send
        write what is held first, so messages keep their order (a ping may pass them)."""
        if self.corked is None:
            self.corked = []

    def uncork(self) -> None:
        if self.corked is not None:
            self._write_corked()
            self.corked = None

    async def send(self, message: Message) -> None:
        """Send one message (bytes: binary, str: text); waits while the client reads slowly.
        Raises Disconnected when the socket has ended; after our close, drops the message."""
        while self.writable is not None:  # other frames may fill the buffer again first
            await asyncio.shield(self.writable)
        if self.close_sent:
            return
        self._write_corked()  # what send_now took before the buffer filled goes first
        if not self.send_now(message):
            raise Disconnected(self.ended if self.ended is not None else CODE_ABNORMAL)

    async def close(self, code: int) -> None:
        """Send our close frame; the TCP connection ends on the client's answer or after
        CLOSE_TIMEOUT_S. The handler's next receive raises Disconnected(code)."""
        conn = self.conn
        if self.close_sent or self.ended is not None or self.transport is None or conn is None:
            return
        if not self._send_close(conn, code):
            return
        if self.read_paused:  # read on: the client's close frame is what ends the socket
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = asyncio.get_running_loop().call_later(
            CLOSE_TIMEOUT_S, self._close_transport
        )

    # Keepalive (keepalive.py)

    def send_ping(self, payload: bytes) -> bool:
        conn = self.conn
        if self.close_sent or self.ended is not None or conn is None:
            return False
        conn.send_ping(payload)
        self._flush()
        return True

    def keepalive_expired(self) -> None:
        if not self.close_sent and self.ended is None:
            self._fail(CODE_KEEPALIVE, "keepalive ping timeout")

    # Plumbing

    def _flush(self) -> None:
        """Send what websockets queued (pongs, close frames, deflated frames)."""
        if self.conn is not None:
            self._write(b"".join(self.conn.data_to_send()))

    def _write_corked(self) -> None:
        corked = self.corked
        if corked:
            self._write(b"".join(corked))
            corked.clear()

    def _write(self, data: bytes) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _send_close(self, conn: ServerProtocol, code: int) -> bool:
        """Our close frame, after what cork() holds; False when the connection is no longer
        open (websockets refuses to send it)."""
        self.close_sent = True
        self._write_corked()
        try:
            conn.send_close(code)
        except InvalidState:
            return False
        self._flush()
        self._end(code)
        return True

    def _fail(self, code: int, reason: str) -> None:
        """End the socket for the client's fault: our close frame, then the TCP close."""
        if self.conn is not None:
            self.conn.fail(code, reason)
        self.close_sent = True
        self._flush()
        self._end(code)
        self._close_transport()

    def _end(self, code: int) -> None:
        """The socket has ended: the handler's receive raises Disconnected(code) once the
        messages before it are taken."""
        if self.ended is None:
            self.ended = code
            if self.keepalive is not None:
                self.keepalive.stop()
            _settle(self._waiter, Disconnected(code))

    def _close_transport(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
