"""Locust users speaking WebSocket API v1 (msgpack) to a Coin Manor server.

    locust -f load/locustfile.py --host http://127.0.0.1:8000            # web UI
    locust -f load/locustfile.py --headless -u 20 -r 10 --run-time 15s \
        --host http://127.0.0.1:8000 DailyPlayer                         # one scenario

Every op is reported to locust as request_type "ws", name = op name. A reply with
`ok: false` is a failure unless its code is listed as expected for that op; a repeat
`sign_in` is not an error at all (`ok: true, already: true`). Tokens are minted with
MANOR_JWT_SECRET, which must be the server's. See load/README.md.

NOTE (scenario c, not written yet): a "steal storm" -- many players stealing from one
popular player's farm at the moment a crop ripens -- belongs with the farm ops (`plant`,
`harvest`, `steal`) and comes with the farm issue. It is deliberately absent here.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import secrets
import time
import urllib.request
from datetime import timedelta
from typing import Any

import gevent
import msgpack
from locust import User, between, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import MasterRunner
from websockets.sync.client import ClientConnection, connect

from game_rules import business_day, day_start_ms
from server.auth import issue_token
from server.rulebook import read_rules

log = logging.getLogger(__name__)

SUBPROTOCOL = "manor.v1.msgpack"
TOKEN_TTL_S = 3600
CONNECT_TIMEOUT_S = 5.0
CLOSE_TIMEOUT_S = 1.0
REPLY_TIMEOUT_S = 10.0
FRAMES_PER_REPLY_MAX = 64  # pushes read past while waiting for one reply
REQUESTS_PER_SOCKET_MAX = 1 << 20  # ids per connection: base + 0 .. this
FRAME_BYTES_MAX = 1 << 20

DAILY_ITERATIONS_MAX = int(os.environ.get("MANOR_LOAD_ITERATIONS_MAX", "50"))
DAILY_RECONNECT_EVERY = 5  # iterations between reconnects (on average)
LEDGER_PAGES_MAX = 3
SPIKE_LEAD_S = float(os.environ.get("MANOR_LOAD_SPIKE_LEAD_S", "5"))
SPIKE_AFTER_ITERATIONS_MAX = 5
SPIKE_MARGIN_S = 0.25  # after the turn: other server workers poll the dev clock (0.2 s)
DEV_CLOCK_TIMEOUT_S = 5.0

_player_numbers = itertools.count(int(os.environ.get("MANOR_LOAD_PLAYER_FIRST", "0")))


class OpFailed(Exception):
    """An `ok: false` reply, a missing reply or a reply that contradicts the scenario."""


def ws_url(host: str) -> str:
    base = host.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base.removeprefix("https://") + "/v1/ws"
    return "ws://" + base.removeprefix("http://") + "/v1/ws"


def mint_token(player_id: str) -> str:
    secret = os.environ.get("MANOR_JWT_SECRET", "")
    if len(secret) < 32:
        raise RuntimeError("set MANOR_JWT_SECRET to the server's secret (>= 32 characters)")
    return issue_token(secret, player_id, int(time.time()), TOKEN_TTL_S)


class ManorUser(User):
    """One player on one socket at a time; every op goes through `call`."""

    abstract = True

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.player_id = f"load-{next(_player_numbers)}"
        self.token = mint_token(self.player_id)
        self.socket: ClientConnection | None = None
        self.closer: contextlib.ExitStack | None = None
        self.ids: itertools.count[int] = itertools.count()
        self.push_seq = 0  # the last push seen: reconnects resume after it
        self.iterations = 0

    # -- transport ------------------------------------------------------------------------

    def fire(self, name: str, started_s: float, length: int, exc: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type="ws",
            name=name,
            response_time=(time.perf_counter() - started_s) * 1000.0,
            response_length=length,
            exception=exc,
            context={"player": self.player_id},
        )

    def connect(self, resume: bool = False) -> bool:
        """Open a socket (reported as "connect"); a fresh request id stream per socket."""
        self.disconnect()
        url = ws_url(self.host or "")
        if resume and self.push_seq:
            url += f"?since_seq={self.push_seq}"
        started_s = time.perf_counter()
        stack = contextlib.ExitStack()
        try:
            # As a context manager: websockets >= 17.1 warns about a bare connect().
            self.socket = stack.enter_context(
                connect(
                    url,
                    subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                    additional_headers={"Authorization": f"Bearer {self.token}"},
                    open_timeout=CONNECT_TIMEOUT_S,
                    close_timeout=CLOSE_TIMEOUT_S,
                    max_size=FRAME_BYTES_MAX,
                )
            )
        except Exception as exc:  # noqa: BLE001 - every failure to connect is a locust failure
            self.fire("connect", started_s, 0, exc)
            return False
        self.closer = stack
        # Replies are cached per (player, id) for a day: a new socket must not reuse ids.
        base = secrets.randbits(32) * REQUESTS_PER_SOCKET_MAX
        self.ids = itertools.count(base)
        self.fire("connect", started_s, 0, None)
        return True

    def disconnect(self) -> None:
        closer, self.closer, self.socket = self.closer, None, None
        if closer is not None:
            try:
                closer.close()
            except Exception:  # closing a broken socket: nothing to report
                log.debug("close failed for %s", self.player_id, exc_info=True)

    def call(
        self,
        op: str,
        args: dict[str, Any] | None = None,
        *,
        name: str | None = None,
        expected_codes: frozenset[str] = frozenset(),
    ) -> dict[str, Any] | None:
        """Send one request and wait for its reply; None when it failed (already reported)."""
        name = name or op
        if self.socket is None and not self.connect():
            return None
        assert self.socket is not None
        request_id = next(self.ids)
        frame = msgpack.packb({"id": request_id, "op": op, "args": args or {}})
        started_s = time.perf_counter()
        deadline_s = started_s + REPLY_TIMEOUT_S
        try:
            self.socket.send(frame)
            for _ in range(FRAMES_PER_REPLY_MAX):
                raw = self.socket.recv(timeout=max(0.0, deadline_s - time.perf_counter()))
                message = msgpack.unpackb(raw, raw=False)
                if "push" in message:
                    self.push_seq = max(self.push_seq, int(message.get("seq") or 0))
                    continue
                if message.get("id") != request_id:
                    raise OpFailed(f"reply for id {message.get('id')!r}, wanted {request_id}")
                break
            else:
                raise OpFailed(f"no reply within {FRAMES_PER_REPLY_MAX} frames")
        except Exception as exc:  # noqa: BLE001 - timeouts, closes, bad frames: report, reconnect
            self.fire(name, started_s, 0, exc)
            self.disconnect()
            return None
        length = len(raw)
        if not message.get("ok"):
            error = message.get("error") or {}
            code = str(error.get("code"))
            if code in expected_codes:
                self.fire(name, started_s, length, None)
            else:
                self.fire(name, started_s, length, OpFailed(f"{code}: {error.get('message')}"))
            return None
        result: dict[str, Any] = message["result"]
        self.fire(name, started_s, length, None)
        return result

    def fail(self, name: str, reason: str) -> None:
        """A reply that was ok on the wire but wrong for the scenario."""
        self.fire(name, time.perf_counter(), 0, OpFailed(reason))

    def read_ledger(self, limit: int) -> None:
        before_seq: int | None = None
        for _ in range(LEDGER_PAGES_MAX):
            args: dict[str, Any] = {"limit": limit}
            if before_seq is not None:
                args["before_seq"] = before_seq
            page = self.call("ledger", args)
            if page is None or page.get("next_before_seq") is None:
                return
            before_seq = int(page["next_before_seq"])

    def on_stop(self) -> None:
        self.disconnect()


class DailyPlayer(ManorUser):
    """Open the app, look, sign in, read the ledger, idle; reconnect now and then."""

    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.connect()

    @task
    def play(self) -> None:
        self.iterations += 1
        if self.iterations > DAILY_ITERATIONS_MAX:
            raise StopUser
        # A reconnect resumes after the last push seen, as the app does.
        reconnect = self.socket is None or self.iterations % DAILY_RECONNECT_EVERY == 0
        if reconnect and not self.connect(resume=True):
            return
        state = self.call("state")
        if state is None:
            return
        if state.get("player") != self.player_id:
            self.fail("state", f"state of {state.get('player')!r}, wanted {self.player_id!r}")
        signed = self.call("sign_in")
        if (
            signed is not None
            and not signed["already"]
            and state["signed_in_today"]
            and signed["day"] == state["day"]
        ):
            self.fail("sign_in", f"{self.player_id} paid twice for {signed['day']}")
        self.read_ledger(limit=5)


class Spike:
    """When the business day turns, on the local wall clock; set by the test_start hook."""

    at_s: float | None = None
    day: str = ""
    error: str = ""


def post_dev_clock(host: str, advance_ms: int) -> dict[str, Any]:
    request = urllib.request.Request(
        host.rstrip("/") + "/dev/clock",
        data=json.dumps({"advance_ms": advance_ms}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=DEV_CLOCK_TIMEOUT_S) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def schedule_spike(host: str, lead_s: float) -> None:
    """Move the server clock to `lead_s` before a business-day boundary (forward only)."""
    tz = read_rules(os.environ.get("MANOR_RULES", "")).tz
    lead_ms = int(lead_s * 1000)
    now_ms = int(post_dev_clock(host, 0)["now_ms"])
    day = business_day(now_ms, tz) + timedelta(days=1)
    if day_start_ms(day, tz) - now_ms < lead_ms:
        day += timedelta(days=1)
    midnight_ms = day_start_ms(day, tz)
    moved = post_dev_clock(host, midnight_ms - lead_ms - now_ms)
    Spike.at_s = time.time() + (midnight_ms - int(moved["now_ms"])) / 1000.0
    Spike.day = day.isoformat()
    log.info("midnight spike: server clock moved; %s starts in %.1f s", Spike.day, lead_s)


@events.test_start.add_listener
def on_test_start(environment: Environment, **kwargs: Any) -> None:
    if MidnightSpike not in (environment.user_classes or []):
        return
    if isinstance(environment.runner, MasterRunner):
        return  # the worker (one: see README) moves the clock, next to its users
    started_s = time.perf_counter()
    try:
        schedule_spike(environment.host or "", SPIKE_LEAD_S)
    except Exception as exc:  # noqa: BLE001 - 403 DEV_CLOCK_OFF, refused, ...: one failure
        Spike.error = f"POST /dev/clock failed (is MANOR_DEV_CLOCK=1?): {exc}"
        environment.events.request.fire(
            request_type="http",
            name="/dev/clock",
            response_time=(time.perf_counter() - started_s) * 1000.0,
            response_length=0,
            exception=exc,
        )
        return
    environment.events.request.fire(
        request_type="http",
        name="/dev/clock",
        response_time=(time.perf_counter() - started_s) * 1000.0,
        response_length=0,
        exception=None,
    )


class MidnightSpike(ManorUser):
    """Connect, wait for the business day to turn, then sign in together with everyone.

    Needs the server started with MANOR_DEV_CLOCK=1: the test_start hook moves the server
    clock to MANOR_LOAD_SPIKE_LEAD_S seconds before the next midnight in the rules' time
    zone. Reported as "sign_in@midnight"; a reply that is not a fresh credit for the new
    day is a failure.
    """

    wait_time = between(1.0, 3.0)

    def on_start(self) -> None:
        if Spike.at_s is None:
            self.fail("sign_in@midnight", Spike.error or "the spike was not scheduled")
            raise StopUser
        if not self.connect() or self.call("state") is None:
            return
        gevent.sleep(max(0.0, Spike.at_s + SPIKE_MARGIN_S - time.time()))
        signed = self.call("sign_in", name="sign_in@midnight")
        if signed is None:
            return
        if signed["already"] or signed["day"] != Spike.day:
            self.fail(
                "sign_in@midnight",
                f"wanted a credit for {Spike.day}, got day {signed['day']} "
                f"already={signed['already']}",
            )

    @task
    def linger(self) -> None:
        self.iterations += 1
        if self.iterations > SPIKE_AFTER_ITERATIONS_MAX:
            raise StopUser
        if self.call("state") is not None:
            self.read_ledger(limit=5)
