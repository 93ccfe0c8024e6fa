"""A stateful model of the whole coin economy, checked against the real server.

Hypothesis drives the real app (uvicorn on a free port, a real Valkey, a clock the machine
moves) through WebSocket ops (sign-in, plant, water, steal, harvest) and the platform and
admin HTTP APIs (friend imports, orders, refunds, reviews, exchange, checkout holds,
grants, reversals), and moves the clock across business days and expiry batch boundaries
(30 June / 31 December in Asia/Shanghai). A plain-Python model keeps every player's
batches, holds and debt by the documented rules (docs/platform.md, docs/ledger.md,
docs/admin.md, the demo rules' numbers); it never reads the server's Redis state. After
every step: each player's balance as their socket's `state` shows it; for the players the
step touched, the admin lookup's balance, held, debt and batches and its `verify` of the
player; the system accounts of the players' buckets against their journals, and Σ = 0.
Examples of full length end with a whole-store `verify`.

Hypothesis rules are synchronous: one server runs for the module in an event loop of its
own, driven with `run_until_complete` from the rules (server, sockets and HTTP clients
all live in that loop, so nothing runs between steps and no thread is involved). Each
example empties the store and starts again at the same instant.

Two rules target bugs fixed in c36c76e (an operator's reversal and a refund of the same
order both taking the reward back; a `checkout/reserve` retried while the first was in
flight answering HOLD_MISMATCH): MANOR_MODEL_KNOWN_BUGS=skip leaves them out, to check
the rest against a server that still has them.

A long run: `MANOR_MODEL_EXAMPLES=200 MANOR_MODEL_STEPS=80 .venv/bin/pytest -s
tests/test_model.py`. Shrinking is off by default (it replays hundreds of examples, which
takes minutes); MANOR_MODEL_SHRINK=1 turns it on to get the minimal failing example.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import os
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from redis.asyncio import Redis

from game_rules import business_day, day_start_ms, expiry_batch, parse_rules
from server.client import ManorClient, ManorError
from server.ledger.ledger import Entry
from server.ledger.verify import verify
from server.platform import commerce
from server.store.embedded import EmbeddedStore
from server.store.keys import PlayerKeys
from tests.conftest import shanghai_ms
from tests.live import Live, serve

T = TypeVar("T")
pytestmark = pytest.mark.slow  # it starts a Valkey of its own and runs for seconds

EXAMPLES = int(os.environ.get("MANOR_MODEL_EXAMPLES", "10"))
STEPS = int(os.environ.get("MANOR_MODEL_STEPS", "50"))
SHRINK = os.environ.get("MANOR_MODEL_SHRINK", "") not in ("", "0")
KNOWN_BUGS = os.environ.get("MANOR_MODEL_KNOWN_BUGS", "include") != "skip"
STEP_TIMEOUT_S = 30.0

RULES_PATH = Path(__file__).resolve().parent.parent / "game_rules" / "demo.toml"
RULES = parse_rules(RULES_PATH.read_text("utf-8"))
TZ = RULES.tz
PLATFORM_KEY = "model-platform-key-0123456789-abcdefghij"
ADMIN_KEY = "model-admin-key-0123456789-abcdefghijkl"
PLAYERS = ("ann", "bob", "cat")
PLOTS = 2  # of the demo rules' 6: crowded plots make more thefts and waterings
SEEDS = ("turnip", "pumpkin")
START_MS = shanghai_ms("2026-11-23T09:00:00")
DAY = timedelta(days=1)

STATS: collections.Counter[str] = collections.Counter()  # what the runs did, printed at the end


class ModelClock:
    """The app's clock: stands still until the machine moves it. While `ticking`, every
    read moves it 1 ms on, so two requests in flight at once see different times, as they
    would on a real clock (the concurrent reserve rule)."""

    def __init__(self, now_ms: int) -> None:
        self._now_ms = now_ms
        self.ticking = False

    def now_ms(self) -> int:
        if self.ticking:
            self._now_ms += 1
        return self._now_ms

    def peek(self) -> int:
        return self._now_ms

    def reset(self, now_ms: int) -> None:
        """A new example starts over (the store is emptied with it)."""
        self._now_ms = now_ms
        self.ticking = False

    def advance(self, delta_ms: int) -> None:
        assert delta_ms >= 0
        self._now_ms += delta_ms


# --- the model -----------------------------------------------------------------------------


@dataclass
class Hold:
    coins: int
    expires_ms: int
    state: str = "pending"  # pending (void anyway from expires_ms on), posted, voided

    def now(self, now_ms: int) -> str:
        """The hold's state at now_ms: a pending hold is void from its expires_ms on,
        whether or not anything wrote the void yet."""
        if self.state == "pending" and now_ms >= self.expires_ms:
            return "voided"
        return self.state


@dataclass
class Order:
    items: list[tuple[str, int, int]]  # (item_id, paid_fen, coins)
    refunded_fen: dict[str, int] = field(default_factory=dict)
    refunds: dict[str, int] = field(default_factory=dict)  # refund id -> coins taken back
    refund_debits: list[str] = field(default_factory=list)  # refund transfer ids posted
    taken_back: int = 0  # coins refunds and a reversal took back, never above earned
    reversed: bool = False

    @property
    def earned(self) -> int:
        return sum(coins for _, _, coins in self.items)


@dataclass
class Crop:
    seed: str
    cycle: int
    ripe_at_ms: int
    yield_coins: int
    stolen: int = 0
    thieves: set[str] = field(default_factory=set)
    waterers: set[str] = field(default_factory=set)


@dataclass
class Daily:
    day: date | None = None
    water_paid: int = 0
    steal_count: int = 0
    steal_coins: int = 0

    def on(self, day: date) -> Daily:
        return Daily(day) if self.day is None or day > self.day else self


@dataclass
class Player:
    name: str
    batches: dict[date, int] = field(default_factory=dict)
    debt: int = 0
    holds: dict[str, Hold] = field(default_factory=dict)
    signin_day: date | None = None
    streak: int = 0
    orders: dict[str, Order] = field(default_factory=dict)
    plots: dict[int, Crop] = field(default_factory=dict)
    cycles: int = 0
    daily: Daily = field(default_factory=Daily)
    reversible: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> (kind, coins)
    reversed: set[str] = field(default_factory=set)

    @property
    def balance(self) -> int:
        return sum(self.batches.values())

    def batches_view(self) -> list[dict[str, Any]]:
        return [{"expires": d.isoformat(), "coins": c} for d, c in sorted(self.batches.items())]


class Economy:
    """Every player's coins by the documented rules, on the machine's clock."""

    def __init__(self, clock: ModelClock) -> None:
        self.clock = clock
        self.players = {name: Player(name) for name in PLAYERS}
        self.friends: dict[frozenset[str], int] = {}  # pair -> since_ms

    @property
    def now(self) -> int:
        return self.clock.peek()

    def today(self) -> date:
        return business_day(self.now, TZ)

    def batch(self) -> date:
        return expiry_batch(self.today(), RULES.expiry)

    def held(self, p: Player) -> int:
        """Coins the player's holds lock now (a hold past its time locks nothing)."""
        return sum(h.coins for h in p.holds.values() if h.now(self.now) == "pending")

    def write_voids(self, p: Player) -> None:
        """A commit of the player writes the void of every hold past its time."""
        for hold in p.holds.values():
            hold.state = hold.now(self.now)

    def available(self, p: Player) -> int:
        return p.balance - self.held(p)

    # Every commit first expires the batches whose last valid day has passed, except the
    # coins the holds lock, counted from the oldest batch (commit.lua).
    def expire(self, p: Player) -> None:
        locked, today = self.held(p), self.today()
        for day in sorted(p.batches):
            kept = min(locked, p.batches[day])
            locked -= kept
            if day < today and p.batches[day] > kept:
                p.batches[day] = kept
        p.batches = {d: c for d, c in p.batches.items() if c > 0}

    def expiry_pending(self) -> bool:
        for p in self.players.values():
            before = dict(p.batches)
            self.expire(p)
            changed = p.batches != before
            p.batches = before
            if changed:
                return True
        return False

    def spend(self, p: Player, coins: int) -> None:
        """A debit takes the batches that expire first (held or not: holds are a count)."""
        left = coins
        for day in sorted(p.batches):
            take = min(left, p.batches[day])
            p.batches[day] -= take
            left -= take
        assert left == 0, f"model: {p.name} spends {coins} of {p.balance + coins - left}"
        p.batches = {d: c for d, c in p.batches.items() if c > 0}

    def credit(self, p: Player, transfer_id: str, coins: int) -> None:
        p.batches[self.batch()] = p.batches.get(self.batch(), 0) + coins
        repay = min(p.debt, coins)  # debt is repaid first from any credit
        if repay:
            self.spend(p, repay)
            p.debt -= repay
        p.reversible[transfer_id] = ("c", coins)

    def debit(self, p: Player, transfer_id: str, coins: int) -> None:
        assert coins <= self.available(p)
        self.spend(p, coins)
        p.reversible[transfer_id] = ("d", coins)

    def friendship(self, a: str, b: str) -> int | None:
        return self.friends.get(frozenset((a, b)))


def order_coins(fens: list[int]) -> list[int]:
    """Shopping feedback: 10 % per item (floor, 1 coin = 1 fen) once the order reaches
    50 yuan, at most 1000 coins per item."""
    reward = RULES.order_reward
    if sum(fens) < reward.paid_fen_min:
        return [0] * len(fens)
    per_cent = reward.reward_pct * RULES.checkout.coins_per_yuan
    return [min(reward.item_coins_max, fen * per_cent // 10_000) for fen in fens]


def clawed(coins: int, refunded_fen: int, paid_fen: int) -> int:
    """What refunds of refunded_fen (all so far) take back of an item: ceil(C R / P)."""
    if refunded_fen == paid_fen:
        return coins
    return min(coins, -(-coins * refunded_fen // paid_fen))


# --- the harness: one server per example ---------------------------------------------------


@dataclass
class Reply:
    status: int
    body: dict[str, Any]

    @property
    def code(self) -> str | None:
        error = self.body.get("error")
        return None if error is None else str(error["code"])


class Harness:
    """One server for the whole run (uvicorn on the module's Valkey, in a loop of its own);
    each example starts from an empty store and the start time, on the same sockets."""

    def __init__(self, store_url: str, data_dir: Path) -> None:
        self.store_url, self.data_dir = store_url, data_dir
        self.loop = asyncio.new_event_loop()
        self.clock = ModelClock(START_MS)
        self.stack = contextlib.AsyncExitStack()
        self.sockets: dict[str, ManorClient] = {}
        self.run(self._start())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, STEP_TIMEOUT_S))

    async def _start(self) -> None:
        self.redis = Redis.from_url(self.store_url)
        self.stack.push_async_callback(self.redis.aclose)
        await self.redis.flushall()
        self.live: Live = await self.stack.enter_async_context(
            serve(
                self.store_url,
                self.data_dir,
                self.clock,
                rules=str(RULES_PATH),
                platform_key=PLATFORM_KEY,
                admin_key=ADMIN_KEY,
                requests_per_s_max=10_000,
                request_burst_max=100_000,
            )
        )
        self.platform = await self.stack.enter_async_context(
            httpx.AsyncClient(
                base_url=self.live.http, headers={"Authorization": f"Bearer {PLATFORM_KEY}"}
            )
        )
        self.admin = await self.stack.enter_async_context(
            httpx.AsyncClient(
                base_url=self.live.http, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
            )
        )
        self.stack.push_async_callback(self._close_sockets)

    async def _close_sockets(self) -> None:
        for client in self.sockets.values():
            await client.close()

    def reset(self) -> None:
        """A new example: an empty store, the start time, every socket open."""
        self.clock.reset(START_MS)
        self.run(self._reset())

    async def _reset(self) -> None:
        await self.redis.flushall()
        for name in PLAYERS:
            client = self.sockets.get(name)
            if client is None or client.close_code is not None:
                if client is not None:
                    await client.close()
                self.sockets[name] = await self.live.connect(name)
            while not self.sockets[name].pushes.empty():
                self.sockets[name].pushes.get_nowait()

    def close(self) -> None:
        try:
            self.run(self.stack.aclose())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()

    @property
    def services(self) -> Any:
        return self.live.manor.dispatcher.services

    async def ws(self, who: str, op: str, **args: Any) -> tuple[str | None, dict[str, Any]]:
        client = self.sockets[who]
        while not client.pushes.empty():  # pushes are not checked here; keep the queue short
            client.pushes.get_nowait()
        try:
            return None, await client.call(op, **args)
        except ManorError as exc:
            return exc.code, {}

    async def post(self, http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> Reply:
        response = await http.post(path, json=body)
        return Reply(response.status_code, response.json())

    async def twice(
        self, http: httpx.AsyncClient, path: str, body: dict[str, Any]
    ) -> tuple[Reply, Reply]:
        """The same call twice, in flight at once."""
        first, second = await asyncio.gather(
            self.post(http, path, body), self.post(http, path, body)
        )
        return first, second


HARNESS: list[Harness] = []  # the module fixture's


# --- the machine -----------------------------------------------------------------------------

FENS = st.sampled_from([0, 1999, 3000, 5000, 9999, 12_345, 20_000, 1_500_000])


class EconomyMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.h = HARNESS[0]
        self.h.reset()
        self.clock = self.h.clock
        self.m = Economy(self.clock)
        self.ids = 0
        self.steps = 0
        self.touched: set[str] = set(PLAYERS)  # looked up in detail after the step
        STATS["examples"] += 1

    def teardown(self) -> None:
        # The invariant checks the players' buckets after every step; the whole store's
        # verify (all 1024 buckets, ~0.5 s) closes the examples of full length.
        if self.steps >= STEPS // 2:
            report = self.h.run(verify(self.h.redis))
            assert report.ok, report.problems
            STATS["whole-store verifies"] += 1

    def fresh(self, prefix: str) -> str:
        self.ids += 1
        return f"{prefix}{self.ids}"

    def player(self, name: str) -> Player:
        self.touched.add(name)
        return self.m.players[name]

    def touch(self, p: Player) -> Player:
        self.touched.add(p.name)
        return p

    def settle_expiry(self) -> None:
        """The 00:05 sweep (run by hand: the daily jobs run on the wall clock), whenever the
        model holds coins of a passed batch that no hold locks."""
        if self.m.expiry_pending():
            self.touched.update(PLAYERS)
            today = self.m.today()
            swept = [p for p in self.m.players.values() if any(d < today for d in p.batches)]
            self.h.run(commerce.sweep_expiry(self.h.services))
            for p in swept:  # the sweep commits to every wallet with a passed batch
                self.m.write_voids(p)
                self.m.expire(p)
            STATS["expiry sweeps"] += 1

    # --- the clock ---------------------------------------------------------------------------

    def after_advance(self, fire_timers: bool) -> None:
        self.touched.update(PLAYERS)
        self.settle_expiry()
        if fire_timers:
            report = self.h.run(self.h.live.manor.timers.tick(self.clock.peek()))
            assert report.failed == 0
            for p in self.m.players.values():  # the timers of due holds write their void
                self.m.write_voids(p)
            self.settle_expiry()

    @rule(
        seconds=st.sampled_from([1, 5, 29, 31, 59, 61, 121, 301, 901, 5 * 3600]),
        fire_timers=st.booleans(),
    )
    def advance(self, seconds: int, fire_timers: bool) -> None:
        self.clock.advance(seconds * 1000)
        self.after_advance(fire_timers)

    @rule(hour=st.integers(0, 23), fire_timers=st.booleans())
    def next_day(self, hour: int, fire_timers: bool) -> None:
        target = day_start_ms(self.m.today() + DAY, TZ) + hour * 3_600_000 + 5000
        self.clock.advance(target - self.clock.peek())
        self.after_advance(fire_timers)
        STATS["days"] += 1

    @precondition(lambda self: any(p.batches for p in self.m.players.values()))
    @rule(fire_timers=st.booleans())
    def past_batch_boundary(self, fire_timers: bool) -> None:
        """To 00:00:05 after the earliest batch still to come (or the next 30 June / 31
        December): the batch's coins expire, except what holds lock."""
        today = self.m.today()
        ahead = [d for p in self.m.players.values() for d in p.batches if d >= today]
        boundary = (
            min(ahead) if ahead else expiry_batch(today, RULES.expiry).replace(year=today.year)
        )
        target = day_start_ms(boundary + DAY, TZ) + 5000
        self.clock.advance(target - self.clock.peek())
        self.after_advance(fire_timers)
        STATS["batch boundaries"] += 1

    # --- the game, over the players' sockets ------------------------------------------------

    @rule(name=st.sampled_from(PLAYERS))
    def sign_in(self, name: str) -> None:
        p = self.player(name)
        code, got = self.h.run(self.h.ws(name, "sign_in"))
        assert code is None, code
        today = self.m.today()
        if p.signin_day == today:
            assert got["already"] is True
        else:
            p.streak = p.streak + 1 if p.signin_day == today - DAY else 1
            p.signin_day = today
            coins = RULES.signin.rewards[(p.streak - 1) % len(RULES.signin.rewards)]
            self.m.credit(p, f"signin:{name}:{today.isoformat()}", coins)
            assert (got["already"], got["coins"], got["streak"]) == (False, coins, p.streak)
            assert got["balance"] == p.balance
            STATS["sign-ins paid"] += 1

    @rule(
        name=st.sampled_from(PLAYERS), plot=st.integers(0, PLOTS - 1), seed=st.sampled_from(SEEDS)
    )
    def plant(self, name: str, plot: int, seed: str) -> None:
        p = self.player(name)
        code, got = self.h.run(self.h.ws(name, "plant", plot=plot, seed=seed))
        if plot in p.plots:
            assert code == "PLOT_BUSY"
            return
        assert code is None, code
        rules = RULES.seeds[seed]
        p.cycles += 1
        crop = Crop(seed, p.cycles, self.m.now + rules.grow_ms, rules.yield_coins)
        p.plots[plot] = crop
        assert (got["crop"]["cycle"], got["crop"]["ripe_at_ms"]) == (crop.cycle, crop.ripe_at_ms)

    def plot_of(self, owner: str, pick: int) -> int:
        """Mostly a plot with a crop (the interesting case), else any plot."""
        planted = sorted(self.m.players[owner].plots)
        if planted and pick % 4:
            return planted[pick % len(planted)]
        return pick % PLOTS

    @rule(name=st.sampled_from(PLAYERS), pick=st.integers(0, 1000))
    def harvest(self, name: str, pick: int) -> None:
        self.harvest_at(name, self.plot_of(name, pick))

    def harvest_at(self, name: str, plot: int) -> None:
        p = self.player(name)
        code, got = self.h.run(self.h.ws(name, "harvest", plot=plot))
        crop = p.plots.get(plot)
        if crop is None:
            assert code == "PLOT_EMPTY", code
            return
        if self.m.now < crop.ripe_at_ms:
            assert code == "NOT_RIPE", code
            return
        assert code is None, code
        coins = crop.yield_coins - crop.stolen
        del p.plots[plot]
        if coins > 0:
            self.m.credit(p, f"harvest:{name}:{plot}:{crop.cycle}", coins)
        assert (got["coins"], got["balance"]) == (coins, p.balance)
        STATS["harvests"] += 1

    def visit_target(self, pick: int, stage: str) -> tuple[str, str, int]:
        """(visitor, owner, plot): mostly a friend and a crop at `stage`, else anything."""
        now = self.m.now
        crops = [
            (owner, plot)
            for owner, p in self.m.players.items()
            for plot, crop in sorted(p.plots.items())
            if (now >= crop.ripe_at_ms) == (stage == "ripe")
        ]
        if crops and pick % 5:
            owner, plot = crops[pick % len(crops)]
        else:
            owner, plot = PLAYERS[pick % len(PLAYERS)], pick % PLOTS
        others = [n for n in PLAYERS if n != owner]
        friends = [n for n in others if self.m.friendship(n, owner) is not None]
        visitors = friends if friends and pick % 7 else others
        return visitors[pick // 7 % len(visitors)], owner, plot

    @rule(pick=st.integers(0, 10_000))
    def water(self, pick: int) -> None:
        self.water_at(*self.visit_target(pick, "growing"))

    def water_at(self, name: str, owner: str, plot: int) -> None:
        w, o = self.player(name), self.player(owner)
        code, got = self.h.run(self.h.ws(name, "water", player=owner, plot=plot))
        crop = o.plots.get(plot)
        if self.m.friendship(name, owner) is None:
            assert code == "NOT_FRIENDS", code
            return
        if crop is None:
            assert code == "PLOT_EMPTY", code
            return
        if self.m.now >= crop.ripe_at_ms:
            assert code == "ALREADY_RIPE", code
            return
        if name in crop.waterers:
            assert code == "ALREADY_WATERED", code
            return
        assert code is None, code
        water = RULES.farm.water
        advanced = (crop.ripe_at_ms - self.m.now) * water.share_pct // 100
        crop.ripe_at_ms -= advanced
        crop.waterers.add(name)
        w.daily = w.daily.on(self.m.today())
        coins = 0
        if water.reward_coins > 0 and w.daily.water_paid < water.paid_per_day_max:
            w.daily.water_paid += 1
            coins = water.reward_coins
            self.m.credit(w, f"water:{owner}:{plot}:{crop.cycle}:{name}", coins)
        assert (got["coins"], got["advanced_ms"], got["ripe_at_ms"]) == (
            coins,
            advanced,
            crop.ripe_at_ms,
        )
        assert got["balance"] == w.balance
        STATS["waterings"] += 1

    @rule(pick=st.integers(0, 10_000))
    def steal(self, pick: int) -> None:
        self.steal_at(*self.visit_target(pick, "ripe"))

    def steal_at(self, name: str, owner: str, plot: int) -> None:
        t, o = self.player(name), self.player(owner)
        code, got = self.h.run(self.h.ws(name, "steal", player=owner, plot=plot))
        since = self.m.friendship(name, owner)
        crop = o.plots.get(plot)
        if since is None:
            assert code == "NOT_FRIENDS", code
            return
        if self.m.now - since < RULES.farm.friendship_cooldown_ms:
            assert code == "FRIENDSHIP_TOO_NEW", code
            return
        if crop is None:
            assert code == "PLOT_EMPTY", code
            return
        if self.m.now < crop.ripe_at_ms:
            assert code == "NOT_RIPE", code
            return
        if name in crop.thieves:
            assert code == "ALREADY_STOLEN", code
            return
        seed = RULES.seeds[crop.seed]
        left = crop.yield_coins * seed.steal_cap_pct // 100 - crop.stolen
        if left <= 0:
            assert code == "STEAL_CAP_REACHED", code
            return
        daily = t.daily.on(self.m.today())
        caps = RULES.farm.steal
        daily_left = caps.coins_per_day_max - daily.steal_coins
        if daily.steal_count >= caps.count_per_day_max or daily_left <= 0:
            assert code == "DAILY_CAP_REACHED", code
            return
        assert code is None, code
        coins = min(max(1, crop.yield_coins * seed.steal_share_pct // 100), left, daily_left)
        t.daily = daily
        daily.steal_count += 1
        daily.steal_coins += coins
        crop.stolen += coins
        crop.thieves.add(name)
        self.m.credit(t, f"steal:{owner}:{plot}:{crop.cycle}:{name}", coins)
        assert (got["coins"], got["balance"]) == (coins, t.balance)
        STATS["thefts"] += 1

    @rule(
        owner=st.sampled_from(PLAYERS),
        seed=st.sampled_from(SEEDS),
        waterers=st.sets(st.sampled_from(PLAYERS)),
        thieves=st.lists(st.sampled_from(PLAYERS), max_size=3),
        fire_timers=st.booleans(),
    )
    def farm_round(
        self, owner: str, seed: str, waterers: set[str], thieves: list[str], fire_timers: bool
    ) -> None:
        """A whole crop cycle on a free plot: plant, friends water it, it ripens, friends
        steal (a thief twice is refused), the owner harvests the rest."""
        free = [n for n in range(PLOTS) if n not in self.m.players[owner].plots]
        if not free:
            return
        plot = free[0]
        self.plant(owner, plot, seed)
        for name in sorted(waterers - {owner}):
            self.water_at(name, owner, plot)
        crop = self.m.players[owner].plots[plot]
        self.clock.advance(max(crop.ripe_at_ms - self.clock.peek(), 0) + 1000)
        self.after_advance(fire_timers)
        for name in thieves:
            if name != owner:
                self.steal_at(name, owner, plot)
        self.harvest_at(owner, plot)
        STATS["farm rounds"] += 1

    @initialize(everyone=st.booleans())
    def friends_at_start(self, everyone: bool) -> None:
        """Most examples start with every pair befriended by the platform import."""
        if everyone:
            for a, b in itertools.combinations(PLAYERS, 2):
                self.import_pair(a, b)

    @rule(pair=st.permutations(PLAYERS).map(lambda names: names[:2]))
    def import_friends(self, pair: tuple[str, str]) -> None:
        self.import_pair(*pair)

    def import_pair(self, a: str, b: str) -> None:
        pair = (a, b)
        got = self.h.run(
            self.h.post(self.h.platform, "/v1/platform/friends", {"edges": [{"a": a, "b": b}]})
        )
        assert got.status == 200 and got.body == {"imported": 1, "skipped": []}, got
        self.m.friends[frozenset(pair)] = self.m.now  # the cooldown starts again

    # --- the platform: orders, refunds, reviews, exchange -------------------------------------

    @rule(name=st.sampled_from(PLAYERS), fens=st.lists(FENS, min_size=1, max_size=3))
    def order_paid(self, name: str, fens: list[int]) -> None:
        p = self.player(name)
        order_id = self.fresh("o")
        items = [{"item_id": f"i{n}", "paid_fen": fen} for n, fen in enumerate(fens)]
        body = {"player": name, "order_id": order_id, "items": items}
        got = self.h.run(self.h.post(self.h.platform, "/v1/platform/orders/paid", body))
        assert got.status == 200, got
        coins = order_coins(fens)
        order = Order(
            [(f"i{n}", fen, c) for n, (fen, c) in enumerate(zip(fens, coins, strict=True))]
        )
        p.orders[order_id] = order
        if order.earned:
            self.m.credit(p, f"order:{order_id}:reward", order.earned)
        assert (got.body["coins"], got.body["already"], got.body["balance"]) == (
            order.earned,
            False,
            p.balance,
        )
        STATS["orders"] += 1

    @precondition(lambda self: any(p.orders for p in self.m.players.values()))
    @rule(pick=st.integers(0, 10_000))
    def order_paid_again(self, pick: int) -> None:
        """The platform retries an order it reported: nothing moves."""
        orders = [(p, oid, o) for p in self.m.players.values() for oid, o in p.orders.items()]
        p, order_id, order = orders[pick % len(orders)]
        self.touch(p)
        items = [{"item_id": i, "paid_fen": fen} for i, fen, _ in order.items]
        body = {"player": p.name, "order_id": order_id, "items": items}
        got = self.h.run(self.h.post(self.h.platform, "/v1/platform/orders/paid", body))
        assert got.status == 200, got
        assert (got.body["coins"], got.body["already"], got.body["balance"]) == (
            order.earned,
            True,
            p.balance,
        )

    def refundable(self) -> list[tuple[Player, str, Order]]:
        return [
            (p, oid, o)
            for p in self.m.players.values()
            for oid, o in sorted(p.orders.items())
            if KNOWN_BUGS or not o.reversed
        ]

    @precondition(lambda self: self.refundable())
    @rule(
        pick=st.integers(0, 10_000),
        item=st.integers(0, 2),
        part=st.sampled_from(["all", "half", "one", "over"]),
    )
    def refund(self, pick: int, item: int, part: str) -> None:
        orders = self.refundable()
        p, order_id, order = orders[pick % len(orders)]
        self.touch(p)
        item_id, paid_fen, coins = order.items[item % len(order.items)]
        before_fen = order.refunded_fen.get(item_id, 0)
        rest = paid_fen - before_fen
        fen = {"all": rest, "half": rest // 2, "one": min(1, rest), "over": rest + 1}[part]
        refund_id = self.fresh("r")
        body = {
            "player": p.name,
            "order_id": order_id,
            "refund_id": refund_id,
            "items": [{"item_id": item_id, "refunded_fen": fen}],
        }
        got = self.h.run(self.h.post(self.h.platform, "/v1/platform/orders/refund", body))
        if fen > rest:
            assert (got.status, got.code) == (400, "BAD_REFUND"), got
            return
        assert got.status == 200, got
        self.m.write_voids(p)
        step = clawed(coins, before_fen + fen, paid_fen) - clawed(coins, before_fen, paid_fen)
        claw = min(step, order.earned - order.taken_back)  # an order is taken back once
        order.refunded_fen[item_id] = before_fen + fen
        order.taken_back += claw
        order.refunds[refund_id] = claw
        taken = min(claw, self.m.available(p))  # what holds lock is not available
        if taken:
            transfer_id = f"refund:{order_id}:{refund_id}"
            self.m.debit(p, transfer_id, taken)
            order.refund_debits.append(transfer_id)
        p.debt += claw - taken
        STATS["refunds"] += 1
        STATS["refunds into debt"] += taken < claw
        assert (got.body["balance"], got.body["debt"]) == (p.balance, p.debt), (
            f"refund {refund_id} of {order_id} ({fen} fen of item {item_id}, reversed="
            f"{order.reversed}): server {got.body}, model takes {claw} coins "
            f"(taken {taken}, debt {p.debt}, balance {p.balance})"
        )
        assert (got.body["coins"], got.body["taken"], got.body["debt_added"]) == (
            claw,
            taken,
            claw - taken,
        ), got

    @rule(name=st.sampled_from(PLAYERS), fen=st.sampled_from([1, 9999, 10_000, 50_000]))
    def review(self, name: str, fen: int) -> None:
        p = self.player(name)
        review_id = self.fresh("rv")
        body = {"player": name, "review_id": review_id, "order_paid_fen": fen}
        got = self.h.run(self.h.post(self.h.platform, "/v1/platform/reviews", body))
        assert got.status == 200, got
        coins = next(c for at, c in reversed(RULES.review_reward.tiers) if fen >= at)
        self.m.credit(p, f"review:{review_id}", coins)
        assert (got.body["coins"], got.body["balance"]) == (coins, p.balance)

    @rule(name=st.sampled_from(PLAYERS), points=st.sampled_from([1, 3, 100, 101]))
    def exchange(self, name: str, points: int) -> None:
        p = self.player(name)
        txn_id = self.fresh("t")
        body = {"player": name, "partner": "china_mobile", "txn_id": txn_id, "points": points}
        got = self.h.run(self.h.post(self.h.platform, "/v1/platform/exchange", body))
        terms = RULES.exchange.partners["china_mobile"]
        if points > terms.points_per_exchange_max:
            assert (got.status, got.code) == (422, "POINTS_OVER_LIMIT"), got
            return
        assert got.status == 200, got
        coins = points * terms.coins_per_point_num // terms.coins_per_point_den
        self.m.credit(p, f"exchange:china_mobile:{txn_id}", coins)
        assert (got.body["coins"], got.body["balance"]) == (coins, p.balance)

    # --- checkout: reserve, post, void ------------------------------------------------------

    @rule(
        name=st.sampled_from(PLAYERS),
        share=st.sampled_from(["one", "half", "all", "more"]),
        price=st.sampled_from(["cap", "under_cap", "big"]),
    )
    def reserve(self, name: str, share: str, price: str) -> None:
        p = self.player(name)
        available = self.m.available(p)
        part = {"one": 1, "half": available // 2, "all": available, "more": available + 1}
        coins = max(1, part[share])
        order_fen = {"cap": 2 * coins, "under_cap": 2 * coins - 1, "big": 10_000_000}[price]
        order_id = self.fresh("c")
        body = {"player": name, "order_id": order_id, "order_fen": order_fen, "coins": coins}
        got = self.h.run(self.h.post(self.h.platform, "/v1/platform/checkout/reserve", body))
        checkout = RULES.checkout
        cap = order_fen * checkout.order_share_max_pct * checkout.coins_per_yuan // 10_000
        if coins > cap:
            assert (got.status, got.code) == (422, "COINS_OVER_CAP"), got
            return
        if coins > available:
            assert (got.status, got.code) == (422, "INSUFFICIENT_FUNDS"), got
            return
        assert got.status == 200, got
        self.m.write_voids(p)
        hold = Hold(coins, self.m.now + checkout.hold_timeout_ms)
        p.holds[order_id] = hold
        assert (got.body["expires_ms"], got.body["already"], got.body["available"]) == (
            hold.expires_ms,
            False,
            self.m.available(p),
        )
        STATS["holds"] += 1

    def rich(self) -> list[Player]:
        return [p for p in self.m.players.values() if self.m.available(p)]

    @precondition(lambda self: KNOWN_BUGS and self.rich())
    @rule(pick=st.integers(0, 10_000))
    def reserve_retried_concurrently(self, pick: int) -> None:
        """The payment service retries a reserve whose answer it did not get yet: the same
        call twice in flight. One hold, both answered 200 (one of them `already`)."""
        rich = self.rich()
        p = rich[pick % len(rich)]
        self.touch(p)
        coins = max(1, self.m.available(p) // 3)
        order_id = self.fresh("c")
        body = {"player": p.name, "order_id": order_id, "order_fen": 2 * coins, "coins": coins}
        path = "/v1/platform/checkout/reserve"
        before = self.clock.peek()
        self.clock.ticking = True
        try:
            first, second = self.h.run(self.h.twice(self.h.platform, path, body))
        finally:
            self.clock.ticking = False
        STATS["concurrent reserves"] += 1
        assert (first.status, second.status) == (200, 200), (
            f"checkout/reserve of {coins} coins sent twice at once: {first} / {second}"
        )
        assert first.body["expires_ms"] == second.body["expires_ms"], (first, second)
        assert sorted([first.body["already"], second.body["already"]]) == [False, True]
        expires_ms = first.body["expires_ms"]
        timeout = RULES.checkout.hold_timeout_ms
        assert before + timeout <= expires_ms <= self.clock.peek() + timeout
        self.m.write_voids(p)
        p.holds[order_id] = Hold(coins, expires_ms)

    def pick_hold(self, pick: int) -> tuple[Player, str, Hold]:
        holds = [(p, oid, h) for p in self.m.players.values() for oid, h in sorted(p.holds.items())]
        p, order_id, hold = holds[pick % len(holds)]
        self.touch(p)
        return p, order_id, hold

    @precondition(lambda self: any(p.holds for p in self.m.players.values()))
    @rule(pick=st.integers(0, 10_000), same=st.booleans())
    def reserve_again(self, pick: int, same: bool) -> None:
        """A repeat: the same coins answer the first reserve; other coins are refused."""
        p, order_id, hold = self.pick_hold(pick)
        coins = hold.coins if same else hold.coins + 1
        body = {"player": p.name, "order_id": order_id, "order_fen": 10_000_000, "coins": coins}
        got = self.h.run(self.h.post(self.h.platform, "/v1/platform/checkout/reserve", body))
        state = hold.now(self.m.now)
        if state == "pending" and same:
            assert got.status == 200 and got.body["already"] is True, got
            assert got.body["expires_ms"] == hold.expires_ms
        elif state == "pending":
            assert (got.status, got.code) == (409, "HOLD_MISMATCH"), got
        else:  # settled, or void by its time
            assert (got.status, got.code) == (409, f"HOLD_{state.upper()}"), (hold, got)

    @precondition(lambda self: any(p.holds for p in self.m.players.values()))
    @rule(pick=st.integers(0, 10_000))
    def post(self, pick: int) -> None:
        p, order_id, hold = self.pick_hold(pick)
        body = {"player": p.name, "order_id": order_id}
        got = self.h.run(self.h.post(self.h.platform, "/v1/platform/checkout/post", body))
        if hold.state == "posted":
            assert got.status == 200 and got.body["already"] is True, got
        elif hold.state == "voided":
            assert (got.status, got.code) == (409, "HOLD_VOIDED"), got
        elif hold.now(self.m.now) == "voided":
            # Past its time: HOLD_EXPIRED, or HOLD_VOIDED once a commit wrote the void.
            assert got.status == 409 and got.code in ("HOLD_EXPIRED", "HOLD_VOIDED"), got
            self.m.write_voids(p)
            self.settle_expiry()
        else:
            assert got.status == 200, got
            self.m.write_voids(p)
            hold.state = "posted"
            self.m.debit(p, f"redeem:{order_id}", hold.coins)
            assert (got.body["balance"], got.body["available"]) == (
                p.balance,
                self.m.available(p),
            )
            STATS["holds posted"] += 1

    @precondition(lambda self: any(p.holds for p in self.m.players.values()))
    @rule(pick=st.integers(0, 10_000))
    def void(self, pick: int) -> None:
        p, order_id, hold = self.pick_hold(pick)
        body = {"player": p.name, "order_id": order_id}
        got = self.h.run(self.h.post(self.h.platform, "/v1/platform/checkout/void", body))
        if hold.state == "posted":
            assert (got.status, got.code) == (409, "HOLD_POSTED"), got
            return
        assert got.status == 200 and got.body["state"] == "voided", got
        if hold.state == "voided":
            assert got.body["already"] is True, got
        elif hold.now(self.m.now) == "pending":
            assert got.body["already"] is False, got
        hold.state = "voided"
        self.m.write_voids(p)
        if got.body["already"] is False:
            assert got.body["available"] == self.m.available(p), got
        self.settle_expiry()

    @rule(name=st.sampled_from(PLAYERS), verb=st.sampled_from(["checkout/post", "checkout/void"]))
    def settle_unknown_hold(self, name: str, verb: str) -> None:
        body = {"player": name, "order_id": self.fresh("nope")}
        got = self.h.run(self.h.post(self.h.platform, f"/v1/platform/{verb}", body))
        assert (got.status, got.code) == (404, "HOLD_NOT_FOUND"), got

    # --- the operators: grants and reversals --------------------------------------------------

    @rule(name=st.sampled_from(PLAYERS), coins=st.sampled_from([1, 7, 100, 2500]))
    def grant(self, name: str, coins: int) -> None:
        p = self.player(name)
        grant_id = self.fresh("g")
        body = {"player": name, "coins": coins, "reason": "model", "grant_id": grant_id}
        got = self.h.run(self.h.post(self.h.admin, "/v1/admin/grant", body))
        assert got.status == 200, got
        self.m.write_voids(p)
        self.m.credit(p, f"grant:{grant_id}", coins)
        assert (got.body["balance"], got.body["debt"]) == (p.balance, p.debt), got

    def reversible(self) -> list[tuple[Player, str]]:
        found = []
        for p in self.m.players.values():
            for transfer_id in sorted(p.reversible):
                order = self.order_of_reward(p, transfer_id)
                if not KNOWN_BUGS and order is not None and (order.taken_back or order.reversed):
                    continue  # a reward some refund took back: the known double take-back
                if order is not None and any(d in p.reversed for d in order.refund_debits):
                    continue  # which coins a reversal should take is not specified then
                found.append((p, transfer_id))
        return found

    @staticmethod
    def order_of_reward(p: Player, transfer_id: str) -> Order | None:
        if transfer_id.startswith("order:") and transfer_id.endswith(":reward"):
            return p.orders[transfer_id[len("order:") : -len(":reward")]]
        return None

    @precondition(lambda self: self.reversible())
    @rule(pick=st.integers(0, 10_000))
    def reverse(self, pick: int) -> None:
        found = self.reversible()
        p, transfer_id = found[pick % len(found)]
        self.touch(p)
        body = {"player": p.name, "transfer_id": transfer_id, "reason": "model"}
        got = self.h.run(self.h.post(self.h.admin, "/v1/admin/reverse", body))
        kind, coins = p.reversible[transfer_id]
        if transfer_id in p.reversed:
            assert got.status == 200 and got.body["already"] is True, got
            assert (got.body["balance"], got.body["debt"]) == (p.balance, p.debt), got
            return
        order = self.order_of_reward(p, transfer_id)
        assert got.status == 200, got
        self.m.write_voids(p)
        p.reversed.add(transfer_id)
        STATS["reversals"] += 1
        if kind == "c":
            # A credit reversed takes back what the player has available, the rest is debt.
            # An order's reward: only what its refunds did not take back already.
            due = coins if order is None else order.earned - order.taken_back
            moved = min(due, self.m.available(p))
            if moved:
                self.m.spend(p, moved)
            p.debt += due - moved
            if order is not None:
                order.taken_back = order.earned
                order.reversed = True
            assert (got.body["moved"], got.body["debt_added"]) == (moved, due - moved), (
                f"reversal of {transfer_id} ({coins} coins"
                + ("" if order is None else f", refunds took {order.refunds} before")
                + f"): server {got.body}, model moves {moved} and adds debt {due - moved}"
            )
        else:
            # A debit reversed is credited back in today's batch (and repays debt first).
            self.m.credit(p, f"reverse:{transfer_id}", coins)
            del p.reversible[f"reverse:{transfer_id}"]  # a reversal is not reversed
        assert (got.body["balance"], got.body["debt"]) == (p.balance, p.debt), got

    # --- after every step: the server agrees with the model ----------------------------------

    @invariant()
    def server_agrees(self) -> None:
        STATS["steps checked"] += 1
        self.steps += 1
        self.h.run(self.check())

    async def check(self) -> None:
        """Every player's balance as their own socket sees it; for the players the step
        touched, the operators' lookup: balance, held, debt, batches and their verify."""
        h = self.h
        balances = 0
        for name, p in self.m.players.items():
            code, state = await h.ws(name, "state")
            assert code is None and state["balance"] == p.balance, (name, code, state, p.balance)
            balances += state["balance"]
            if name not in self.touched:
                continue
            response = await h.admin.get(f"/v1/admin/players/{name}", params={"limit": 1})
            held = self.m.held(p)
            if response.status_code == 404:
                assert (p.balance, held, p.debt) == (0, 0, 0), f"{name}: no wallet"
                continue
            view = response.json()
            assert response.status_code == 200, view
            # Exact: the lookup counts a hold past its time as void before a commit says so.
            server = (view["balance"], view["held"], view["debt"], view["batches"])
            model = (p.balance, held, p.debt, p.batches_view())
            assert server == model, (
                f"{name}: server (balance, held, debt, batches) {server}, model {model}"
            )
            assert view["verify"]["ok"], view["verify"]
        self.touched.clear()
        # The books of the players' buckets (every other bucket is empty): each system
        # account holds the opposite of what the journals posted against it, and Σ = 0.
        journals: dict[str, collections.Counter[str]] = {}
        for name in PLAYERS:
            keys = PlayerKeys(name)
            posted = journals.setdefault(keys.sys, collections.Counter())
            for raw in await h.redis.lrange(keys.journal, 0, -1):  # type: ignore[misc]
                entry = Entry.decode(raw)
                posted[entry.account] -= entry.amount
        systems = 0
        for sys_key, posted in journals.items():
            raw_sys = await h.redis.hgetall(sys_key)  # type: ignore[misc]
            accounts = {k.decode(): int(v) for k, v in raw_sys.items() if int(v)}
            assert accounts == {a: c for a, c in posted.items() if c}, (sys_key, accounts, posted)
            systems += sum(accounts.values())
        assert balances + systems == 0, f"players {balances} + system accounts {systems} != 0"


EconomyMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    # Shrinking replays hundreds of examples (minutes): off by default so that a failing
    # `make test` stays bounded; MANOR_MODEL_SHRINK=1 finds the minimal example.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, *([Phase.shrink] if SHRINK else [])],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module", autouse=True)
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """One Valkey and one server for the module; every example empties the store."""
    folder = tmp_path_factory.mktemp("model")
    store = EmbeddedStore(folder / "store", appendfsync="no")
    store.start()
    STATS.clear()
    started = time.monotonic()
    try:
        harness = Harness(store.url, folder)
        HARNESS[:] = [harness]
        try:
            yield harness
        finally:
            HARNESS.clear()
            harness.close()
    finally:
        store.stop()
    elapsed = time.monotonic() - started
    print(f"\nmodel run ({elapsed:.1f} s): {dict(sorted(STATS.items()))}")


TestEconomy = EconomyMachine.TestCase
