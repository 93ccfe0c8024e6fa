"""The steal saga across midnight: a reservation given back after a CONFLICT."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from redis.asyncio import Redis

from server.clock import FrozenClock
from server.store.keys import PlayerKeys
from tests.conftest import shanghai_ms
from tests.dispatch import op
from tests.live import Live


def move_to(clock: FrozenClock, local_time: str) -> None:
    clock.advance(shanghai_ms(local_time) - clock.now_ms())


async def daily(redis: Redis, player: str) -> dict[str, Any]:
    raw = await redis.hget(PlayerKeys(player).state, "daily")
    assert raw is not None
    wire: dict[str, Any] = msgpack.unpackb(raw, raw=False)
    return wire


async def test_first_steal_of_a_day_meeting_a_conflict_counts_once(
    live: Live, redis: Redis, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server.ops import visit

    await op(live, "bob", "friend_request", player="ann")
    assert (await op(live, "ann", "friend_accept", player="bob"))["status"] == "friends"
    move_to(clock, "2026-11-25T09:00:00")
    for plot in range(3):
        await op(live, "ann", "plant", plot=plot, seed="turnip")
    move_to(clock, "2026-11-25T23:59:00")
    for plot in range(2):
        assert (await op(live, "bob", "steal", player="ann", plot=plot))["coins"] == 2
    assert await daily(redis, "bob") == {"d": "2026-11-25", "w": 0, "k": 2, "c": 4}

    move_to(clock, "2026-11-26T00:00:05")
    real = visit.apply
    owner = PlayerKeys("ann")
    conflicts = 0

    async def another_thief_came_first(store: Any, keys: PlayerKeys, *args: Any, **kw: Any) -> Any:
        nonlocal conflicts
        if keys.state == owner.state and conflicts == 0:
            conflicts += 1
            await redis.hincrby(owner.state, "ver", 1)  # the owner's farm moved: CONFLICT
        return await real(store, keys, *args, **kw)

    with monkeypatch.context() as patch:
        patch.setattr(visit, "apply", another_thief_came_first)
        assert (await op(live, "bob", "steal", player="ann", plot=2))["coins"] == 2
    assert conflicts == 1
    assert await daily(redis, "bob") == {"d": "2026-11-26", "w": 0, "k": 1, "c": 2}
