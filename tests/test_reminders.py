"""The evening streak reminder and triggers deferred by quiet hours."""

from __future__ import annotations

import asyncio
import json

from redis.asyncio import Redis

from server.clock import FrozenClock
from server.ops.account import remind_streaks
from server.ops.triggers import offer
from tests.conftest import shanghai_ms
from tests.live import Live
from tests.trigger_streams import read_triggers

DAY_MS = 86_400_000


async def kinds(redis: Redis) -> list[tuple[str, str, str]]:
    entries = await read_triggers(redis)
    return [
        (f[b"player"].decode(), f[b"kind"].decode(), f[b"collapse_key"].decode())
        for _, f in entries
    ]


async def test_streak_reminder_reaches_online_and_offline_players(
    live: Live, redis: Redis, clock: FrozenClock
) -> None:
    for player in ("ona", "off", "new"):
        client = await live.connect(player)
        await client.call("sign_in")
        await client.close()
    clock.advance(DAY_MS)  # 09:00 the next day: yesterday's streak breaks at midnight
    fresh = await live.connect("new")
    await fresh.call("sign_in")  # signed today: nothing to remind
    online = await live.connect("ona")
    await online.call("state")
    clock.advance(11 * 3_600_000)  # 20:00 in Shanghai
    services = live.manor.dispatcher.services
    assert await remind_streaks(services) == 2
    push = await online.next_push()
    assert push["push"] == "streak_reminder" and push["data"] == {"streak": 1, "next_coins": 15}
    assert await kinds(redis) == [("off", "streak_reminder", "streak:off:2026-11-24")]
    await online.close()
    await fresh.close()


async def test_trigger_in_quiet_hours_waits_for_the_morning(
    live: Live, redis: Redis, clock: FrozenClock
) -> None:
    services = live.manor.dispatcher.services
    night_ms = shanghai_ms("2026-11-23T23:30:00")
    clock.advance(night_ms - clock.now_ms())
    got = await offer(services, "sam", "crop_ripe", "ripe:sam:0:1", {"plot": 0}, night_ms)
    assert got == "deferred"
    assert await kinds(redis) == []
    timers = live.manor.timers
    await timers.tick(shanghai_ms("2026-11-24T07:59:59"))
    assert await kinds(redis) == []
    await timers.tick(shanghai_ms("2026-11-24T08:00:00"))
    assert await kinds(redis) == [("sam", "crop_ripe", "ripe:sam:0:1")]
    entry = (await read_triggers(redis))[0][1]
    assert json.loads(entry[b"data"]) == {"plot": 0}


async def test_triggers_stop_at_the_daily_cap(live: Live, redis: Redis, clock: FrozenClock) -> None:
    services = live.manor.dispatcher.services
    cap = services.rulebook.rules.notify.triggers_per_day_max
    now_ms = clock.now_ms()
    results = [
        await offer(services, "cap", "crop_ripe", f"ripe:cap:{n}:1", {"plot": n}, now_ms)
        for n in range(cap + 2)
    ]
    assert results == ["sent"] * cap + ["dropped"] * 2
    assert len(await kinds(redis)) == cap
    await asyncio.sleep(0)
