"""Theft notifications that quiet hours defer, for the longest player ids."""

from __future__ import annotations

import json

from redis.asyncio import Redis

from server.clock import FrozenClock
from server.store.keys import PlayerKeys
from tests.conftest import shanghai_ms
from tests.dispatch import op
from tests.live import Live
from tests.trigger_streams import read_triggers

OWNER = "o" * 64  # the longest player id (PLAYER_ID_PATTERN)
THIEVES = [f"{n}" * 64 for n in range(1, 7)]


def move_to(clock: FrozenClock, local_time: str) -> None:
    clock.advance(shanghai_ms(local_time) - clock.now_ms())


async def stolen_triggers(redis: Redis) -> list[dict[str, str]]:
    entries = await read_triggers(redis)
    decoded = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]
    return [t for t in decoded if t["kind"] == "stolen"]


async def test_thefts_deferred_by_quiet_hours_reach_64_character_owners(
    live: Live, redis: Redis, clock: FrozenClock
) -> None:
    for thief in THIEVES:
        await op(live, thief, "friend_request", player=OWNER)
        assert (await op(live, OWNER, "friend_accept", player=thief))["status"] == "friends"
    move_to(clock, "2026-11-25T09:00:00")  # friends for two days
    for plot in range(len(THIEVES)):
        await op(live, OWNER, "plant", plot=plot, seed="turnip")
    timers = live.manor.timers
    move_to(clock, "2026-11-25T13:00:00")
    await timers.tick(clock.now_ms())  # the crop_ripe triggers go out now, not at 08:00
    move_to(clock, "2026-11-25T22:30:00")  # quiet hours (22:00-08:00)
    for plot, thief in enumerate(THIEVES):
        assert (await op(live, thief, "steal", player=OWNER, plot=plot))["coins"] == 2
    clock.advance(live.manor.rulebook.rules.notify.theft_batch_ms)  # the batch closes
    report = await timers.tick(clock.now_ms())
    assert (report.fired, report.failed) == (1, 0)
    assert await stolen_triggers(redis) == []  # deferred to the end of the quiet hours
    move_to(clock, "2026-11-26T08:00:00")
    report = await timers.tick(clock.now_ms())
    assert (report.fired, report.failed) == (1, 0)
    sent = await stolen_triggers(redis)
    assert [(t["player"], t["collapse_key"]) for t in sent] == [
        (OWNER, f"stolen:{OWNER}:2026-11-25")
    ]
    assert json.loads(sent[0]["data"]) == {"thefts": 6, "coins": 12, "thieves": THIEVES[:5]}
    assert await timers.pending() == 0


async def test_a_deferred_trigger_armed_with_its_data_in_the_member_still_fires(
    live: Live, redis: Redis, clock: FrozenClock
) -> None:
    """Timers armed before the data moved out of the member keep working."""
    old = 'notify|ann|crop_ripe|ripe:ann:0:1|{"plot":0,"cycle":1,"seed":"turnip"}'
    await redis.zadd(PlayerKeys("ann").timers, {old: clock.now_ms()})
    report = await live.manor.timers.tick(clock.now_ms())
    assert (report.fired, report.failed) == (1, 0)
    entries = await read_triggers(redis)
    assert [json.loads(fields[b"data"]) for _, fields in entries] == [
        {"plot": 0, "cycle": 1, "seed": "turnip"}
    ]
