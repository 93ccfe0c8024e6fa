"""Locust users speaking WebSocket API v1 (msgpack) to a Coin Manor server.

    locust -f load/locustfile.py --host http://127.0.0.1:8000            # web UI
    locust -f load/locustfile.py --headless -u 20 -r 10 --run-time 15s \
        --host http://127.0.0.1:8000 DailyPlayer                         # one scenario

Every op is reported to locust as request_type "ws", name = op name. A reply with
`ok: false` is a failure unless its code is listed as expected for that op; a repeat
`sign_in` is not an error at all (`ok: true, already: true`). Tokens are minted with
MANOR_JWT_SECRET, which must be the server's. See load/README.md.

Scenarios: DailyPlayer (the daily loop), MidnightSpike (every player signs in as the
business day turns; needs MANOR_DEV_CLOCK=1) and StealStorm (many thieves stealing from
one popular player's ripe farm at once; needs MANOR_DEV_CLOCK=1 and MANOR_PLATFORM_KEY).
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
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, ClassVar

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
HTTP_TIMEOUT_S = 5.0
STAR_ID = os.environ.get("MANOR_LOAD_STAR", "load-star")
THIEVES = int(os.environ.get("MANOR_LOAD_THIEVES", "100"))  # distinct thief ids (friends)
STEAL_ROUNDS_MAX = int(os.environ.get("MANOR_LOAD_STEAL_ROUNDS", "3"))
STORM_REPORT = os.environ.get("MANOR_LOAD_STORM_REPORT", "")  # JSON written at test stop
FRIENDSHIP_AGE_MS = 2 * 86_400_000  # imported friendships are this old: past any cooldown
IMPORT_EDGES_PER_CALL = 1000  # the platform API's limit per call
RIPE_MARGIN_MS = 1000
STEAL_BUSY_RETRIES = 3  # a BUSY steal is resent with the same id, as clients should
BUSY_BACKOFF_S = 0.05  # times the attempt number
# A steal that the rules refuse because others (or this thief) got there first: expected.
STEAL_EXPECTED = frozenset({"STEAL_CAP_REACHED", "ALREADY_STOLEN", "DAILY_CAP_REACHED"})

_player_numbers = itertools.count(int(os.environ.get("MANOR_LOAD_PLAYER_FIRST", "0")))
_thief_numbers = itertools.count()  # thieves wrap around THIEVES ids: see thief_id


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
        self.player_id = self.next_player_id()
        self.token = mint_token(self.player_id)
        self.socket: ClientConnection | None = None
        self.closer: contextlib.ExitStack | None = None
        self.ids: itertools.count[int] = itertools.count()
        self.push_seq = 0  # the last push seen: reconnects resume after it
        self.iterations = 0
        self.last_code = ""  # the error code of the last `ok: false` reply, "" otherwise
        self.retries = 0  # BUSY replies resent with the same id (see `call`)

    def next_player_id(self) -> str:
        return f"load-{next(_player_numbers)}"

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
        busy_retries: int = 0,
    ) -> dict[str, Any] | None:
        """Send one request and wait for its reply; None when it failed (already reported).

        A `BUSY` reply is resent with the same request id up to `busy_retries` times, as
        docs/protocol.md tells clients to; `self.retries` counts those resends."""
        name = name or op
        if self.socket is None and not self.connect():
            return None
        assert self.socket is not None
        self.last_code = ""
        request_id = next(self.ids)
        frame = msgpack.packb({"id": request_id, "op": op, "args": args or {}})
        started_s = time.perf_counter()
        deadline_s = started_s + REPLY_TIMEOUT_S
        for attempt in range(busy_retries + 1):
            try:
                raw = self.exchange(frame, request_id, deadline_s)
            except Exception as exc:  # noqa: BLE001 - timeouts, closes, bad frames: report, reconnect
                self.fire(name, started_s, 0, exc)
                self.disconnect()
                return None
            message = msgpack.unpackb(raw, raw=False)
            error = message.get("error") or {}
            if message.get("ok") or error.get("code") != "BUSY" or attempt == busy_retries:
                break
            self.retries += 1
            gevent.sleep(BUSY_BACKOFF_S * (attempt + 1))
        length = len(raw)
        if not message.get("ok"):
            code = str(error.get("code"))
            self.last_code = code
            if code in expected_codes:
                self.fire(name, started_s, length, None)
            else:
                self.fire(name, started_s, length, OpFailed(f"{code}: {error.get('message')}"))
            return None
        result: dict[str, Any] = message["result"]
        self.fire(name, started_s, length, None)
        return result

    def exchange(self, frame: bytes, request_id: int, deadline_s: float) -> bytes:
        """Send a request frame, read past pushes, return the raw reply."""
        assert self.socket is not None
        self.socket.send(frame)
        for _ in range(FRAMES_PER_REPLY_MAX):
            raw = self.socket.recv(timeout=max(0.0, deadline_s - time.perf_counter()))
            assert isinstance(raw, bytes)
            message = msgpack.unpackb(raw, raw=False)
            if "push" in message:
                self.push_seq = max(self.push_seq, int(message.get("seq") or 0))
                continue
            if message.get("id") != request_id:
                raise OpFailed(f"reply for id {message.get('id')!r}, wanted {request_id}")
            return raw
        raise OpFailed(f"no reply within {FRAMES_PER_REPLY_MAX} frames")

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


def post_json(
    host: str, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    request = urllib.request.Request(
        host.rstrip("/") + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def post_dev_clock(host: str, advance_ms: int) -> dict[str, Any]:
    return post_json(host, "/dev/clock", {"advance_ms": advance_ms})


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


Call = Callable[..., dict[str, Any]]


@contextlib.contextmanager
def session(host: str, player_id: str) -> Iterator[Call]:
    """A socket for the hooks (outside any locust user): `call(op, args)` returns the
    result or raises OpFailed."""
    ids = itertools.count(secrets.randbits(32) * REQUESTS_PER_SOCKET_MAX)
    with connect(
        ws_url(host),
        subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Bearer {mint_token(player_id)}"},
        open_timeout=CONNECT_TIMEOUT_S,
        close_timeout=CLOSE_TIMEOUT_S,
        max_size=FRAME_BYTES_MAX,
    ) as socket:

        def call(op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
            request_id = next(ids)
            socket.send(msgpack.packb({"id": request_id, "op": op, "args": args or {}}))
            deadline_s = time.monotonic() + REPLY_TIMEOUT_S
            for _ in range(FRAMES_PER_REPLY_MAX):
                raw = socket.recv(timeout=max(0.0, deadline_s - time.monotonic()))
                message = msgpack.unpackb(raw, raw=False)
                if "push" not in message:
                    break
            else:
                raise OpFailed(f"{op}: no reply within {FRAMES_PER_REPLY_MAX} frames")
            if message.get("id") != request_id:
                raise OpFailed(f"{op}: reply for id {message.get('id')!r}, wanted {request_id}")
            if not message.get("ok"):
                error = message.get("error") or {}
                raise OpFailed(f"{op}: {error.get('code')}: {error.get('message')}")
            result: dict[str, Any] = message["result"]
            return result

        yield call


def thief_id(n: int) -> str:
    return f"load-thief-{n % THIEVES}"


class Storm:
    """The star's ripe farm (set by the test_start hook) and what the thieves got."""

    plots: tuple[int, ...] = ()  # ripe plots, the same for every thief
    cycles: ClassVar[dict[int, int]] = {}  # plot -> crop cycle planted by the hook
    error: str = ""
    outcomes: ClassVar[dict[str, int]] = {}  # "ok" or the error code -> steals
    coins: int = 0  # coins the `steal` replies reported


def prepare_storm(host: str) -> None:
    """Befriend the star with THIEVES thieves (platform import, friendships two days old),
    fill the star's farm with the fastest seed, move the server clock past its ripening."""
    key = os.environ.get("MANOR_PLATFORM_KEY", "")
    if not key:
        raise RuntimeError("set MANOR_PLATFORM_KEY to the server's platform key")
    rules = read_rules(os.environ.get("MANOR_RULES", ""))
    seed = min(rules.seeds.values(), key=lambda s: s.grow_ms)
    now_ms = int(post_dev_clock(host, 0)["now_ms"])
    since_ms = max(0, now_ms - FRIENDSHIP_AGE_MS)
    edges = [{"a": STAR_ID, "b": thief_id(n), "since_ms": since_ms} for n in range(THIEVES)]
    for first in range(0, len(edges), IMPORT_EDGES_PER_CALL):
        page = {"edges": edges[first : first + IMPORT_EDGES_PER_CALL]}
        post_json(host, "/v1/platform/friends", page, {"Authorization": f"Bearer {key}"})
    with session(host, STAR_ID) as call:
        for view in call("farm")["plots"]:
            plot = int(view["plot"])
            empty = bool(view.get("empty"))
            if not empty and view["stage"] == "ripe":
                call("harvest", {"plot": plot})  # a ripe crop of an earlier run: start fresh
                empty = True
            if empty:
                call("plant", {"plot": plot, "seed": seed.name})
        farm = call("farm")
        ripe_at_ms = max(int(view["ripe_at_ms"]) for view in farm["plots"])
        post_dev_clock(host, max(0, ripe_at_ms + RIPE_MARGIN_MS - int(farm["now_ms"])))
        gevent.sleep(SPIKE_MARGIN_S)  # other server workers poll the dev clock
        ripe = [v for v in call("farm")["plots"] if v.get("stage") == "ripe"]
    if not ripe:
        raise RuntimeError(f"{STAR_ID} has no ripe crop after the clock moved")
    Storm.plots = tuple(int(v["plot"]) for v in ripe)
    Storm.cycles = {int(v["plot"]): int(v["cycle"]) for v in ripe}
    Storm.outcomes.clear()
    Storm.coins = 0
    log.info("steal storm: %d ripe plots of %s for %d thieves", len(ripe), seed.name, THIEVES)


def check_storm(host: str) -> str:
    """At test stop: the coins the replies reported are the coins missing from the crops,
    and no crop lost more than its cap. Writes MANOR_LOAD_STORM_REPORT. "" when it holds."""
    rules = read_rules(os.environ.get("MANOR_RULES", ""))
    with session(host, STAR_ID) as call:
        views = {int(v["plot"]): v for v in call("farm")["plots"]}
    on_crops, over_cap = 0, []
    for plot, cycle in Storm.cycles.items():
        view = views.get(plot, {})
        if view.get("cycle") != cycle:
            continue  # harvested by someone: not the hook's crop any more
        on_crops += int(view["stolen_coins"])
        seed = rules.seeds.get(str(view["seed"]))
        cap = 0 if seed is None else int(view["yield_coins"]) * seed.steal_cap_pct // 100
        if int(view["stolen_coins"]) > cap:
            over_cap.append(plot)
    report = {
        "plots": len(Storm.cycles),
        "outcomes": dict(sorted(Storm.outcomes.items())),
        "coins_replied": Storm.coins,
        "coins_taken_from_crops": on_crops,
        "plots_over_cap": over_cap,
    }
    if STORM_REPORT:
        with open(STORM_REPORT, "w", encoding="utf-8") as handle:
            json.dump(report, handle)
    problems = []
    if on_crops != Storm.coins:
        problems.append(f"replies reported {Storm.coins} coins, crops lost {on_crops}")
    if over_cap:
        problems.append(f"plots {over_cap} lost more than their steal cap")
    return "; ".join(problems)


def fire_hook(environment: Environment, name: str, started_s: float, exc: Exception | None) -> None:
    environment.events.request.fire(
        request_type="http",
        name=name,
        response_time=(time.perf_counter() - started_s) * 1000.0,
        response_length=0,
        exception=exc,
    )


@events.test_start.add_listener
def on_test_start(environment: Environment, **kwargs: Any) -> None:
    classes = environment.user_classes or []
    if isinstance(environment.runner, MasterRunner):
        return  # the worker (one: see README) moves the clock, next to its users
    # The storm first: it moves the clock by a grow time; the spike then aims at midnight.
    if StealStorm in classes:
        started_s = time.perf_counter()
        try:
            prepare_storm(environment.host or "")
        except Exception as exc:  # noqa: BLE001 - 403 DEV_CLOCK_OFF, 401, refused, ...
            Storm.error = f"steal storm setup failed (MANOR_DEV_CLOCK, MANOR_PLATFORM_KEY?): {exc}"
            fire_hook(environment, "storm setup", started_s, exc)
        else:
            fire_hook(environment, "storm setup", started_s, None)
    if MidnightSpike in classes:
        started_s = time.perf_counter()
        try:
            schedule_spike(environment.host or "", SPIKE_LEAD_S)
        except Exception as exc:  # noqa: BLE001 - 403 DEV_CLOCK_OFF, refused, ...: one failure
            Spike.error = f"POST /dev/clock failed (is MANOR_DEV_CLOCK=1?): {exc}"
            fire_hook(environment, "/dev/clock", started_s, exc)
        else:
            fire_hook(environment, "/dev/clock", started_s, None)


@events.test_stop.add_listener
def on_test_stop(environment: Environment, **kwargs: Any) -> None:
    if isinstance(environment.runner, MasterRunner) or not Storm.cycles:
        return
    started_s = time.perf_counter()
    try:
        problem = check_storm(environment.host or "")
    except Exception as exc:  # noqa: BLE001 - the star's socket failed: one failure
        fire_hook(environment, "storm check", started_s, exc)
        return
    fire_hook(environment, "storm check", started_s, OpFailed(problem) if problem else None)


class StealStorm(ManorUser):
    """A thief: visit the star, then steal from every ripe plot, in the same order as
    every other thief, a few rounds. Needs MANOR_DEV_CLOCK=1 and MANOR_PLATFORM_KEY (the
    test_start hook sets the farm up). STEAL_CAP_REACHED, ALREADY_STOLEN and
    DAILY_CAP_REACHED are expected answers, not failures.
    """

    wait_time = between(0.1, 0.5)

    def next_player_id(self) -> str:
        return thief_id(next(_thief_numbers))

    def on_start(self) -> None:
        if not Storm.plots:
            self.fail("steal", Storm.error or "the steal storm was not set up")
            raise StopUser
        if self.connect():
            self.call("visit", {"player": STAR_ID})

    @task
    def raid(self) -> None:
        self.iterations += 1
        if self.iterations > STEAL_ROUNDS_MAX:
            raise StopUser
        for plot in Storm.plots:
            retries = self.retries
            got = self.call(
                "steal",
                {"player": STAR_ID, "plot": plot},
                expected_codes=STEAL_EXPECTED,
                busy_retries=STEAL_BUSY_RETRIES,
            )
            outcome = "ok" if got is not None else (self.last_code or "failed")
            Storm.outcomes[outcome] = Storm.outcomes.get(outcome, 0) + 1
            if self.retries > retries:
                Storm.outcomes["BUSY, resent"] = (
                    Storm.outcomes.get("BUSY, resent", 0) + self.retries - retries
                )
            if got is None:
                continue
            coins = int(got["coins"])
            Storm.coins += coins
            if coins < 1 or int(got["balance"]) < coins:
                self.fail("steal", f"stole {coins} coins, balance {got['balance']}")


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


# -- the flash sale (秒杀): a separate user class, and hooks of its own --------------------

FLASH_ITEM = os.environ.get("MANOR_LOAD_FLASH_ITEM", "double_eleven_flash")
FLASH_LEAD_S = float(os.environ.get("MANOR_LOAD_FLASH_LEAD_S", "5"))
FLASH_REPORT = os.environ.get("MANOR_LOAD_FLASH_REPORT", "")  # JSON written at test stop
FLASH_VIEWS_MAX = 3  # `mall` looks after the press, then the user stops
# The answers a flash sale gives most players: expected, not failures.
FLASH_EXPECTED = frozenset({"SOLD_OUT", "LIMIT_REACHED"})


class Flash:
    """The sale's opening on the local wall clock and the stock; set by the hook."""

    at_s: float | None = None
    stock: int = 0
    error: str = ""
    outcomes: ClassVar[dict[str, int]] = {}  # order state or error code -> presses
    buyers: ClassVar[set[str]] = set()  # players whose press was delivered


def schedule_flash(host: str) -> None:
    """Move the server clock to FLASH_LEAD_S before the item's sale opens (forward only)."""
    from game_rules.mall import window_ms

    rules = read_rules(os.environ.get("MANOR_RULES", ""))
    item = rules.mall.items.get(FLASH_ITEM)
    if item is None:
        raise RuntimeError(f"no mall item {FLASH_ITEM!r} in the rules (MANOR_LOAD_FLASH_ITEM)")
    start_ms, end_ms = window_ms(item, rules.tz)
    now_ms = int(post_dev_clock(host, 0)["now_ms"])
    lead_ms = int(FLASH_LEAD_S * 1000)
    if start_ms - now_ms > lead_ms:
        now_ms = int(post_dev_clock(host, start_ms - lead_ms - now_ms)["now_ms"])
    if end_ms and now_ms >= end_ms:
        raise RuntimeError(f"the sale of {FLASH_ITEM} ended on the server clock")
    Flash.at_s = time.time() + max(0, start_ms - now_ms) / 1000.0
    Flash.stock = item.stock
    Flash.outcomes.clear()
    Flash.buyers.clear()


def fund_flash_buyer(host: str, player_id: str) -> None:
    """Coins for one price, earned by a paid order (platform API, orders scope)."""
    key = os.environ.get("MANOR_PLATFORM_KEY", "")
    if not key:
        raise RuntimeError("set MANOR_PLATFORM_KEY to the server's platform key")
    rules = read_rules(os.environ.get("MANOR_RULES", ""))
    reward = rules.order_reward
    line_coins = max(1, reward.item_coins_max)
    line_fen = max(reward.paid_fen_min, line_coins * 100 // max(1, reward.reward_pct))
    lines = min(ORDER_LINES_FOR_FLASH_MAX, rules.mall.items[FLASH_ITEM].coins // line_coins + 1)
    items = [{"item_id": f"fund-{n}", "paid_fen": line_fen} for n in range(lines)]
    body = {"player": player_id, "order_id": f"flash-fund-{player_id}", "items": items}
    post_json(host, "/v1/platform/orders/paid", body, {"Authorization": f"Bearer {key}"})


ORDER_LINES_FOR_FLASH_MAX = 200  # the platform API's limit of lines per order


@events.test_start.add_listener
def on_flash_start(environment: Environment, **kwargs: Any) -> None:
    if isinstance(environment.runner, MasterRunner) or FlashSale not in (
        environment.user_classes or []
    ):
        return
    started_s = time.perf_counter()
    try:
        schedule_flash(environment.host or "")
    except Exception as exc:  # noqa: BLE001 - 403 DEV_CLOCK_OFF, no item, ended: one failure
        Flash.error = f"flash sale setup failed (MANOR_DEV_CLOCK, MANOR_RULES?): {exc}"
        fire_hook(environment, "flash setup", started_s, exc)
    else:
        fire_hook(environment, "flash setup", started_s, None)


@events.test_stop.add_listener
def on_flash_stop(environment: Environment, **kwargs: Any) -> None:
    if isinstance(environment.runner, MasterRunner) or Flash.at_s is None:
        return
    delivered = Flash.outcomes.get("delivered", 0)
    report = {"stock": Flash.stock, "outcomes": dict(sorted(Flash.outcomes.items()))}
    if FLASH_REPORT:
        with open(FLASH_REPORT, "w", encoding="utf-8") as handle:
            json.dump(report, handle)
    problem = ""
    if delivered > Flash.stock:
        problem = f"{delivered} delivered, only {Flash.stock} in stock"
    elif len(Flash.buyers) != delivered:
        problem = f"{delivered} delivered to {len(Flash.buyers)} players: someone bought twice"
    fire_hook(
        environment, "flash check", time.perf_counter(), OpFailed(problem) if problem else None
    )


class FlashSale(ManorUser):
    """A flash-sale shopper: funded by a paid order, connected before the sale opens, one
    press of `mall_buy` as it opens (reported as "mall_buy@flash"; SOLD_OUT and
    LIMIT_REACHED are expected), the same request once more (it must answer the same
    order), then a few looks at `mall`. Needs MANOR_DEV_CLOCK=1, MANOR_PLATFORM_KEY and
    rules (MANOR_RULES) with the item MANOR_LOAD_FLASH_ITEM on sale in the future.
    """

    wait_time = between(0.5, 1.5)

    def next_player_id(self) -> str:
        return f"load-flash-{next(_player_numbers)}"

    def on_start(self) -> None:
        if Flash.at_s is None:
            self.fail("mall_buy@flash", Flash.error or "the flash sale was not scheduled")
            raise StopUser
        started_s = time.perf_counter()
        try:
            fund_flash_buyer(self.host or "", self.player_id)
        except Exception as exc:  # noqa: BLE001 - refused, 401, timeout: one failure
            self.fire("fund", started_s, 0, exc)
            raise StopUser from None
        self.fire("fund", started_s, 0, None)
        if not self.connect():
            raise StopUser
        gevent.sleep(max(0.0, Flash.at_s + SPIKE_MARGIN_S - time.time()))
        first_id = next(self.ids)
        self.ids = itertools.count(first_id)
        bought = self.call(
            "mall_buy", {"item": FLASH_ITEM}, name="mall_buy@flash", expected_codes=FLASH_EXPECTED
        )
        outcome = bought["order"]["state"] if bought is not None else self.last_code or "failed"
        Flash.outcomes[outcome] = Flash.outcomes.get(outcome, 0) + 1
        if outcome == "delivered":
            Flash.buyers.add(self.player_id)
        # The same request id again (an app retrying after a lost reply): the same answer.
        self.ids = itertools.count(first_id)
        again = self.call(
            "mall_buy", {"item": FLASH_ITEM}, name="mall_buy replay", expected_codes=FLASH_EXPECTED
        )
        if bought is not None and (again is None or again["order"] != bought["order"]):
            self.fail("mall_buy replay", f"{self.player_id}: a replay answered another order")

    @task
    def look(self) -> None:
        self.iterations += 1
        if self.iterations > FLASH_VIEWS_MAX:
            raise StopUser
        self.call("mall")
