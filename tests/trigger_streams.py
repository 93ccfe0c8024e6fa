"""Reading the push-trigger streams in tests: every partition, and the legacy single stream."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from server.store.keys import LEGACY_TRIGGER_STREAM, trigger_partition, trigger_streams


def id_order(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq)


async def read_triggers(redis: Redis) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """XRANGE over every trigger stream (each its own key, its own slot on a cluster),
    merged by stream id: one player's triggers are in one partition, in order."""
    entries: list[Any] = []
    for stream in [*trigger_streams(), LEGACY_TRIGGER_STREAM]:
        entries += await redis.xrange(stream)
    return sorted(entries, key=lambda entry: id_order(entry[0]))


def players_in(partition: int, count: int, prefix: str = "p") -> list[str]:
    """`count` player ids whose triggers go to `partition`."""
    found = []
    n = 0
    while len(found) < count:
        if trigger_partition(f"{prefix}{n}") == partition:
            found.append(f"{prefix}{n}")
        n += 1
    return found
