"""The WebSocket endpoint /v1/ws: a socket once admitted (admission.py checks its upgrade
request): its place among the player's sockets, the request loop, pushes, its log line.

Served on our own wire under uvicorn (wire.py; `uvicorn_options` names it), not through
Starlette's router: the app's lifespan yields the `Manor` as ASGI lifespan state, which
uvicorn hands to every socket. Under another ASGI server the same handler serves the
socket through Starlette's WebSocket (asgi_socket.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from server.metrics import UNKNOWN_OP, Metrics
from server.pipeline import STORE_DOWN_ERRORS, Dispatcher, OpError, Seen
from server.protocol import (
    CLOSE_RATE_LIMITED,
    CLOSE_SLOW_CONSUMER,
    CLOSE_TOO_MANY_SOCKETS,
    Codec,
    ProtocolError,
    balance_push,
    parse_request,
    push_seq,
    reply_error,
    reply_ok,
    state_entry_seq,
)
from server.settings import Settings
from server.store.keys import PlayerKeys
from server.store.store import StoreBusy
from server.transport.admission import Admission, admit
from server.transport.balance_gate import BalanceGate
from server.transport.fanout import Pushes
from server.transport.sender import Sender
from server.transport.sockets import CODE_ABNORMAL, Disconnected, Socket
from server.transport.wire import Wire

log = logging.getLogger(__name__)

CLOSE_GRACE_S = 5.0  # how long a socket we close may take to accept the close frame
# A handshake the store cannot count falls back on this process's own count.
LEASE_STORE_ERRORS: tuple[type[Exception], ...] = (StoreBusy, *STORE_DOWN_ERRORS)


STORE_WARNING_EVERY_S = 1.0  # a store outage fails every request: log one line a second
_store_warned_at_s = 0.0


def warn_store_down(op: str, exc: Exception) -> None:
    global _store_warned_at_s  # noqa: PLW0603 - one process-wide rate limit for one log line
    now_s = time.monotonic()
    if now_s - _store_warned_at_s >= STORE_WARNING_EVERY_S:
        _store_warned_at_s = now_s
        if op == "handshake":
            log.warning("store unavailable (socket limit counted per process): %r", exc)
        else:
            log.warning("store unavailable (op %s answered STORE_UNAVAILABLE): %r", op, exc)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's protocols and WebSocket limits for `manor serve`, the benches and the tests.

    HTTP is parsed by httptools, named rather than left to uvicorn's `auto`, so an install
    without it fails at start-up instead of falling back to h11 (pure Python: 250k more
    instructions per socket's upgrade, docs/benchmark.md).
    """
    return {
        "http": "httptools",
        "ws": "server.transport.ws:ManorWire",
        "ws_max_size": settings.ws_frame_bytes_max,
        "ws_per_message_deflate": settings.ws_deflate,
    }


class TokenBucket:
    """`rate_per_s` requests per second with bursts up to `burst`."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.tokens = float(burst)
        self.at_s = time.monotonic()

    def take(self) -> bool:
        now_s = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now_s - self.at_s) * self.rate_per_s)
        self.at_s = now_s
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Connection:
    def __init__(
        self,
        wire: Socket,
        codec: Codec,
        keys: PlayerKeys,
        dispatcher: Dispatcher,
        fanout: Pushes,
        settings: Settings,
        metrics: Metrics | None = None,
    ) -> None:
        self.wire = wire
        self.codec = codec
        self.keys = keys
        self.dispatcher = dispatcher
        self.seen = Seen()  # the player's state as this socket's last rule op left it
        self.fanout = fanout
        self.settings = settings
        self.sender = Sender(
            wire.send, wire.close, settings.send_queue_max, self._closing, wire.send_now
        )
        self.bucket = TokenBucket(settings.requests_per_s_max, settings.request_burst_max)
        self.strikes = 0
        self.requests = 0  # frames read, for the socket's log line
        self.pushes = 0  # pushes offered
        self.end_code: int | None = None  # how the socket ended, when not by our close
        self.metrics = metrics
        self.last_push_seq: int | None = None  # the newest push this socket was offered
        self.balances = BalanceGate()  # which `balance` pushes are news to this socket
        self.catching_up: set[asyncio.Task[None]] | None = None  # made by the first catch-up
        self.task: asyncio.Task[Any] | None = None  # the task serving the socket
        self.cut_off = False  # set when the grace after our close ran out
        self.cut_timer: asyncio.TimerHandle | None = None
        # The push channel's subscription until confirmed (fan-out's subscribe), then None.
        self.subscribed: asyncio.Future[None] | None = None

    async def confirmed(self) -> None:
        """Until pushes published from now on reach this socket: before its inbox is read
        and before its first request is answered (that request's own pushes included)."""
        if self.subscribed is not None:
            await self.subscribed
            self.subscribed = None

    @property
    def close_code(self) -> int | None:
        return self.sender.close_code

    def offer_push(self, frame: bytes) -> None:
        """From the fan-out: a client too slow to drain its queue is disconnected."""
        seq = push_seq(frame)
        if seq is not None:
            self.last_push_seq = seq
        else:  # a state push (`balance`): the cursor stays; sent only when it is news
            entry_seq = state_entry_seq(frame)
            if entry_seq is not None and not self.balances.admit(frame, entry_seq):
                return
        self._send_push(frame)

    def _send_push(self, frame: bytes) -> None:
        self.pushes += 1
        self.sender.offer(self.codec.push(frame), CLOSE_SLOW_CONSUMER)

    def catch_up(self) -> None:
        """From the fan-out, once the player's channel is subscribed again after a lost
        connection: pushes published in between never came live, so replay them from the
        inbox, then the balance as it is (its live pushes were lost too). Where the socket
        stands: its newest push, else the push seq its last state read saw (every push
        after that read came live until the loss); one that knows neither cannot say, and
        gets `resync`, as a resume from too far back does."""
        since = self.last_push_seq
        if since is None:
            snapshot = self.seen.snapshot
            since = -1 if snapshot is None else int(snapshot.fields.get(b"pseq", 0))
        task = asyncio.get_running_loop().create_task(self._replay(since))
        if self.catching_up is None:
            self.catching_up = set()
        self.catching_up.add(task)
        task.add_done_callback(self.catching_up.discard)

    def _closing(self, code: int) -> None:
        """A close is decided (flood, slow consumer): the client has CLOSE_GRACE_S to take
        the close frame; one that reads nothing never does, and is cut off then."""
        self.cut_timer = asyncio.get_running_loop().call_later(CLOSE_GRACE_S, self._cut_off)

    def _cut_off(self) -> None:
        if self.task is not None and not self.task.done():
            self.cut_off = True
            self.task.cancel()

    def send_message(self, message: dict[str, Any]) -> None:
        self.sender.offer(self.codec.encode(message), CLOSE_SLOW_CONSUMER)

    async def reply(self, message: dict[str, Any]) -> None:
        await self.sender.send(self.codec.encode(message), CLOSE_SLOW_CONSUMER)

    async def _replay(self, since_seq: int) -> None:
        try:
            await self.resume(since_seq)
        except STORE_DOWN_ERRORS as exc:  # still down: the client's own resume covers it
            warn_store_down("catch_up", exc)

    async def resume(self, since_seq: int) -> None:
        """Replay the pushes after `since_seq` from the inbox and send the balance as it
        is (the `balance` push is a state push: never in the inbox), or say a snapshot is
        needed.

        Runs after the socket is attached, so a push may arrive both live and from here:
        clients drop a seq they have already seen, and a balance whose entry_seq is not
        above the one they hold.
        """
        store = self.dispatcher.services.store
        frames, (last, balance, entry_seq) = await store.call_many(
            ("LRANGE", self.keys.inbox, 0, -1),
            ("HMGET", self.keys.state, "pseq", "bal", "seq"),
        )
        last_seq = int(last or 0)
        seqs = [push_seq(f) for f in frames]
        oldest_seq = seqs[0] if seqs else last_seq + 1
        if since_seq > last_seq or oldest_seq is None or oldest_seq > since_seq + 1:
            gap = {"push": "resync", "seq": last_seq, "data": {"snapshot_needed": True}}
            self.send_message(gap)  # `state` carries the balance and its entry_seq
            return
        for seq, frame in zip(seqs, frames, strict=True):
            if seq is not None and seq > since_seq:
                self.offer_push(frame)
        if entry_seq is not None:  # the player has a wallet
            self.offer_push(balance_push(int(balance or 0), 0, int(entry_seq)))

    async def serve(self, since_seq: int | None, entry_seq: int | None = None) -> None:
        """Read requests and write frames until either side ends the socket, in the
        caller's task: an idle socket owns no task of its own. `entry_seq` is the balance
        the app says it holds: no `balance` push at or below it is sent, the resume's
        included.

        A socket we close (flood, slow consumer) gets CLOSE_GRACE_S to take the close
        frame; a client that reads nothing never gets it, and is cut off instead.
        """
        self.task = asyncio.current_task()
        self.last_push_seq = since_seq
        if entry_seq is not None:
            self.balances.entry_seq = entry_seq
        # Not awaited here: the confirmation's round trip overlaps the client's first frame
        # (a connect wave is latency-bound); read_all awaits it before anything it covers.
        self.subscribed = self.fanout.subscribe(
            self.keys.push_channel, self.offer_push, self.catch_up
        )
        try:
            await self.read_all(since_seq)
            drainer = self.sender.drainer
            if self.close_code is not None and drainer is not None and not drainer.done():
                await asyncio.wait({drainer}, timeout=CLOSE_GRACE_S)
        except asyncio.CancelledError:
            if not self.cut_off or self.task is None:
                raise
            self.task.uncancel()  # our own cut-off: the socket ends normally
        finally:
            if self.cut_timer is not None:  # the socket ends here either way
                self.cut_timer.cancel()
            await self.fanout.detach(self.keys.push_channel, self.offer_push, self.catch_up)
            catching_up = tuple(self.catching_up or ())
            for task in catching_up:
                task.cancel()
            await asyncio.gather(self.sender.stop(), *catching_up, return_exceptions=True)

    async def read_all(self, since_seq: int | None) -> None:
        try:
            if since_seq is not None:
                await self.confirmed()
                await self.resume(since_seq)
            await self.read_loop()
        except Disconnected as ended:
            self.end_code = ended.code

    async def read_loop(self) -> None:
        frame_bytes_max = self.settings.frame_bytes_max
        # Looked up once per socket, not per frame (this loop runs for every request).
        receive, send, encode = self.wire.receive, self.sender.send, self.codec.encode
        cork, uncork = self.wire.cork, self.wire.uncork
        balances = self.balances
        while self.close_code is None:
            data = await receive()
            self.requests += 1
            if not self.bucket.take():
                self.strikes += 1  # consecutive refusals: a client that backs off is forgiven
                if self.strikes > self.settings.rate_strikes_max:
                    self.sender.shut(CLOSE_RATE_LIMITED)
                    return
                await self.reply(reply_error(None, "RATE_LIMITED", "too many requests; slow down"))
                continue
            self.strikes = 0
            size_bytes = len(data) if isinstance(data, bytes) else len(data.encode())
            if size_bytes > frame_bytes_max:
                await self.reply(
                    reply_error(
                        None, "FRAME_TOO_LARGE", f"frames are limited to {frame_bytes_max} bytes"
                    )
                )
                continue
            if self.subscribed is not None:
                await self.confirmed()
            # The pushes its answer causes leave with the reply (one write); its own
            # `balance` push does not (balance_gate.py).
            cork()
            balances.answering = True
            try:
                reply = await self.answer(data)
                await send(encode(reply), CLOSE_SLOW_CONSUMER)  # = self.reply
                newer = balances.answered(reply)
                if newer is not None:
                    self._send_push(newer)
            finally:
                balances.answering = False
                uncork()

    async def answer(self, data: bytes | str) -> dict[str, Any]:
        started_s = time.perf_counter()
        op = UNKNOWN_OP
        request_id: int | str | None = None
        try:
            request = parse_request(self.codec.decode(data))
            request_id = request.id
            op = request.op
            reply = reply_ok(
                request.id, await self.dispatcher.handle(self.keys, request, self.seen)
            )
        except ProtocolError as exc:
            reply = reply_error(
                exc.request_id if exc.request_id is not None else request_id, exc.code, exc.message
            )
        except OpError as exc:
            reply = reply_error(request_id, exc.code, exc.message)
        except StoreBusy:
            reply = reply_error(
                request_id, "BUSY", "the server is overloaded; retry with the same id"
            )
        except STORE_DOWN_ERRORS as exc:
            warn_store_down(op, exc)
            reply = reply_error(
                request_id,
                "STORE_UNAVAILABLE",
                "the store is unreachable; retry with the same id in a moment",
            )
        except Exception:  # one bad request must not end the socket
            log.exception("op failed: player %s request %r", self.keys.player_id, request_id)
            reply = reply_error(request_id, "INTERNAL", "the server failed; retry with the same id")
        if self.metrics is not None:
            self.metrics.observe_reply(op, reply, time.perf_counter() - started_s)
        return reply


async def serve_socket(app_state: dict[str, Any], wire: Socket) -> None:
    """One socket of /v1/ws, from the upgrade request to its end (the wire's handler)."""
    app = app_state.get("manor")
    admission = admit(app, wire)
    if admission is None or app is None:
        return
    keys = PlayerKeys(admission.player_id)
    socket_id = app.presence.new_socket_id()
    answer = admission.subprotocol if admission.offered else None
    started_s, peer = time.monotonic(), wire.peer
    if not await take_place(app, keys, socket_id):
        wire.accept(answer)
        await wire.close(CLOSE_TOO_MANY_SOCKETS)
        log_end(admission, peer, started_s, CLOSE_TOO_MANY_SOCKETS, 0, 0)
        return
    connection: Connection | None = None
    try:
        wire.accept(answer)
        connection = Connection(
            wire,
            Codec(admission.subprotocol),
            keys,
            app.dispatcher,
            app.fanout,
            app.settings,
            app.metrics,
        )
        app.sockets += 1
        try:
            await connection.serve(admission.since_seq, admission.entry_seq)
        finally:
            app.sockets -= 1
    finally:
        await app.presence.release(keys, socket_id)
        if connection is not None:
            ours = connection.close_code  # a close we decided (flood, slow consumer)
            code = ours if ours is not None else connection.end_code or CODE_ABNORMAL
            log_end(admission, peer, started_s, code, connection.requests, connection.pushes)


def log_end(
    admission: Admission,
    peer: str,
    started_s: float,
    code: int,
    requests: int,
    pushes: int,
) -> None:
    """The socket's access line, at INFO once it has ended (refused handshakes are the
    wire's own lines). Its fields go to a JSON log as they are."""
    if not log.isEnabledFor(logging.INFO):
        return
    fields = {
        "player": admission.player_id,
        "peer": peer,
        "subprotocol": admission.subprotocol,
        "close_code": code,
        "duration_s": round(time.monotonic() - started_s, 3),
        "requests": requests,
        "pushes": pushes,
    }
    log.info(
        "socket %(player)s from %(peer)s (%(subprotocol)s): closed %(close_code)d after"
        " %(duration_s).3f s, %(requests)d requests, %(pushes)d pushes",
        fields,
        extra=fields,
    )


class ManorWire(Wire):
    """The wire of `manor serve`: uvicorn's `ws=` names this class by its import path."""

    __slots__ = ()

    async def serve(self) -> None:
        await serve_socket(self.app_state, self)


async def take_place(app: Any, keys: PlayerKeys, socket_id: str) -> bool:
    """A place for one more socket of the player, counted across every process
    (presence.py); False at MANOR_SOCKETS_PER_PLAYER_MAX.

    When the store cannot count, this process counts its own sockets as it did before the
    leases, and the next renewal writes the new socket's lease once the store answers.
    """
    limit: int = app.settings.sockets_per_player_max
    try:
        taken: bool = await app.presence.take(keys, socket_id, limit)
    except LEASE_STORE_ERRORS as exc:
        warn_store_down("handshake", exc)
        if app.fanout.sinks_of(keys.push_channel) >= limit:
            return False
        app.presence.hold(keys, socket_id)
        return True
    return taken
