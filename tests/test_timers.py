"""Timers, leases and the outbox relay against a real store."""

from __future__ import annotations

import asyncio
import logging
from datetime import date

import pytest
from redis.asyncio import Redis

from server.ledger.commit import Commit, apply
from server.ledger.outbox import Order, audit, relay
from server.ledger.verify import verify
from server.store.embedded import EmbeddedStore
from server.store.keys import BUCKETS, PlayerKeys
from server.store.lease import Leases
from server.store.store import Store, connect
from server.store.timers import Timers, member
from tests.conftest import calls

NOW_MS = 1_790_000_000_000


async def arm(store: Store, player: str, *due: tuple[str, int]) -> None:
    await apply(store, PlayerKeys(player), Commit(timers=list(due)), NOW_MS)


async def test_due_timers_fire_once_under_two_pollers(store: Store) -> None:
    fired: list[str] = []

    async def handler(parts: list[str], due_ms: int, now_ms: int) -> None:
        fired.append(parts[0])
        await asyncio.sleep(0)

    players = [f"p{n}" for n in range(40)]
    for player in players:
        await arm(store, player, (member("ping", player), NOW_MS + 10))
    await arm(store, "later", (member("ping", "later"), NOW_MS + 10_000))
    one, two = Timers(store, {"ping": handler}), Timers(store, {"ping": handler})
    reports = await asyncio.gather(one.tick(NOW_MS + 10), two.tick(NOW_MS + 10))
    assert sorted(fired) == sorted(players)
    assert sum(r.fired for r in reports) == 40
    assert await one.pending() == 1


async def test_timers_survive_a_new_poller(store: Store, redis_server: EmbeddedStore) -> None:
    """A timer is state in Redis: a poller started later (a restarted server) fires it."""
    await arm(store, "ann", (member("ping", "ann"), NOW_MS))
    await store.close()
    fired: list[int] = []

    async def handler(parts: list[str], due_ms: int, now_ms: int) -> None:
        fired.append(now_ms - due_ms)

    restarted = Timers(Store(connect(redis_server.url)), {"ping": handler})
    await restarted.store.load_scripts()
    report = await restarted.tick(NOW_MS + 250)
    assert report.fired == 1 and fired == [250] and report.late_ms_max == 250
    await restarted.store.close()


async def test_a_failing_timer_does_not_stop_the_others(store: Store) -> None:
    async def boom(parts: list[str], due_ms: int, now_ms: int) -> None:
        raise RuntimeError("boom")

    async def fine(parts: list[str], due_ms: int, now_ms: int) -> None:
        return None

    await arm(store, "a", (member("boom", "a"), NOW_MS), (member("fine", "a"), NOW_MS))
    await arm(store, "b", (member("nobody", "b"), NOW_MS))
    report = await Timers(store, {"boom": boom, "fine": fine}).tick(NOW_MS)
    assert (report.fired, report.failed) == (1, 2)


async def test_lease_has_one_holder_until_it_expires(store: Store) -> None:
    first, second = Leases(store), Leases(store)
    assert await first.hold("job", 200)
    assert not await second.hold("job", 200)
    assert await first.hold("job", 200)  # renewed by its holder
    await asyncio.sleep(0.3)
    assert await second.hold("job", 200)
    assert not await first.hold("job", 200)


def order(thief: str, coins: int, at_ms: int = NOW_MS) -> Order:
    return Order(f"steal:ann:0:1:{thief}", thief, coins, "steal", date(2027, 6, 30), at_ms)


async def take(store: Store, orders: list[Order]) -> None:
    """Step B only: coins leave the crop as orders in ann's outbox (then the process dies)."""
    commit = Commit(orders=[o.commit_entry() for o in orders])
    assert (await apply(store, PlayerKeys("ann"), commit, NOW_MS)).status == "ok"


async def test_relay_completes_credits_a_crash_left_behind(store: Store, redis: Redis) -> None:
    await take(store, [order("bob", 2), order("cat", 3)])
    before = await audit(redis)
    assert before.problems == []
    assert (before.ordered["steal"], before.in_flight["steal"]) == (5, 5)
    assert await relay(store, NOW_MS + 1_000) == 0  # still young: its own process may finish
    assert await relay(store, NOW_MS + 10_000) == 2
    after = await audit(redis)
    assert after.problems == [] and after.credited["steal"] == 5 and after.in_flight["steal"] == 0
    assert await redis.hget(PlayerKeys("bob").state, "bal") == b"2"
    assert await redis.hget(PlayerKeys("cat").state, "bal") == b"3"
    assert await relay(store, NOW_MS + 20_000) == 0
    assert (await verify(redis)).ok


async def test_credit_done_but_order_not_dropped_is_not_paid_twice(
    store: Store, redis: Redis
) -> None:
    """The process died between the credit (C) and dropping the order."""
    stolen = order("bob", 2)
    await take(store, [stolen])
    await apply(store, PlayerKeys("bob"), Commit(transfers=[stolen.transfer()]), NOW_MS)
    assert (await audit(redis)).problems == ["outbox steal: ordered 2 != credited 2 + in flight 2"]
    assert await relay(store, NOW_MS + 10_000) == 1
    assert await redis.hget(PlayerKeys("bob").state, "bal") == b"2"
    assert (await audit(redis)).problems == []


async def test_stopping_the_scheduler_ends_a_running_job_quietly(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    from server.jobs.scheduler import Scheduler

    started = asyncio.Event()
    ended: list[str] = []

    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            ended.append("cancelled")

    scheduler = Scheduler(Leases(store))
    scheduler.every("slow", 0.05, slow)
    scheduler.start()
    await asyncio.wait_for(started.wait(), 5)
    with caplog.at_level(logging.WARNING):
        await asyncio.wait_for(scheduler.stop(), 5)
    assert ended == ["cancelled"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_an_interval_job_that_overran_runs_again_at_once(store: Store) -> None:
    """The next run starts when the last one ends, not an interval later (a timer tick
    that overran its second made timers a whole second later still)."""
    from server.jobs.scheduler import Scheduler

    interval_s = 1.0
    loop = asyncio.get_running_loop()
    spans: list[tuple[float, float]] = []
    two = asyncio.Event()

    async def job() -> None:
        start_s = loop.time()
        if not spans:
            await asyncio.sleep(2.2 * interval_s)  # overruns two intervals
        spans.append((start_s, loop.time()))
        if len(spans) == 2:
            two.set()

    scheduler = Scheduler(Leases(store))
    scheduler.every("overrun", interval_s, job)
    scheduler.start()
    await asyncio.wait_for(two.wait(), 10)
    await scheduler.stop()
    (_, first_end_s), (second_start_s, _) = spans
    assert second_start_s - first_end_s < 0.4 * interval_s  # was 0.8 interval: a skipped run


async def test_a_tick_claims_each_chunk_of_buckets_by_the_clock_of_that_moment(
    store: Store,
) -> None:
    """A timer that falls due while the tick walks the buckets fires in that tick when its
    bucket comes later: each chunk claims by the clock when it is reached."""
    from server.store.timers import TICK_CHUNK_BUCKETS

    late = next(f"z{n}" for n in range(10_000) if PlayerKeys(f"z{n}").bucket >= TICK_CHUNK_BUCKETS)
    await arm(store, late, (member("ping", late), NOW_MS + 500))
    readings = iter([NOW_MS, *([NOW_MS + 1000] * 100)])  # the clock moves after the 1st chunk
    fired: list[int] = []

    async def handler(parts: list[str], due_ms: int, now_ms: int) -> None:
        fired.append(now_ms - due_ms)

    report = await Timers(store, {"ping": handler}).tick(NOW_MS, lambda: next(readings))
    assert report.fired == 1 and fired == [500]


async def test_a_tick_runs_a_script_only_for_buckets_with_a_due_timer(
    store: Store, redis: Redis
) -> None:
    """Every tick looks at all BUCKETS timer sets, once a second, however idle the game: a
    bucket with nothing due costs one read, not a script call (and the claim's reads)."""
    await arm(store, "soon", (member("ping", "soon"), NOW_MS + 10))
    await arm(store, "later", (member("ping", "later"), NOW_MS + 60_000))
    fired: list[str] = []

    async def handler(parts: list[str], due_ms: int, now_ms: int) -> None:
        fired.append(parts[0])

    timers = Timers(store, {"ping": handler})
    scripts, reads = await calls(redis, "evalsha"), await calls(redis, "zrange")
    assert (await timers.tick(NOW_MS)).fired == 0  # nothing due: no script at all
    assert await calls(redis, "evalsha") == scripts
    assert await calls(redis, "zrange") == reads + BUCKETS
    assert (await timers.tick(NOW_MS + 10)).fired == 1 and fired == ["soon"]
    assert await calls(redis, "evalsha") == scripts + 2  # its bucket's claim, then its done
