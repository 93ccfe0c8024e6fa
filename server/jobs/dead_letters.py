"""The push relay's dead letters: triggers acknowledged without a delivery, kept for people.

An entry leaves the trigger stream's pending list undelivered in three ways, and each is
parked in one step (MULTI: XADD to the dead-letter stream, XACK, HDEL of its failure count):

- `malformed`: the stream entry cannot make a request (a missing field, bad JSON);
- `rejected`: the webhook refused it for good (a 4xx other than 401/403/404/408/425/429);
- `failed`: it ended `dead_letter_after` passes undelivered (5xx, timeouts...) while it was
  the one being tried, so it is not retried for ever.

Each trigger stream (every partition, and the legacy single stream) has its dead-letter
stream `<stream>:dead` beside it, in its slot, capped (`MAXLEN`, oldest first out). Each
entry copies the trigger's fields that exist, plus `id` (the trigger's stream id), `reason`,
`failures` and `parked_ms`. `manor push-relay --dead-letters N` prints how many all of them
keep and the newest N over all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from server.jobs.webhook import Fields, text_of
from server.store.keys import LEGACY_TRIGGER_STREAM, TRIGGER_PARTITIONS, trigger_stream

DEAD_LETTER_LEN_MAX = 10_000
TRIGGER_FIELDS = ("player", "kind", "collapse_key", "data", "created_ms")


def relay_streams() -> list[tuple[str, int | None]]:
    """(stream, partition) the relay consumes: every partition, then the legacy stream that
    versions before the partitions wrote (partition None), drained while it exists."""
    streams: list[tuple[str, int | None]] = [
        (trigger_stream(p), p) for p in range(TRIGGER_PARTITIONS)
    ]
    return [*streams, (LEGACY_TRIGGER_STREAM, None)]


def dead_letter_stream(stream: str) -> str:
    """Shares the trigger stream's hash tag, so one MULTI can touch both."""
    return f"{stream}:dead"


def failures_key(stream: str) -> str:
    """Hash: entry id -> passes that ended without a delivery (deleted when it settles)."""
    return f"{stream}:failures"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    dead_id: str  # the id in the dead-letter stream
    trigger_id: str  # as the webhook saw it: `<partition>/<stream id>` (bare: legacy stream)
    player: str
    kind: str
    reason: str
    failures: int
    parked_ms: int


async def park(
    redis: Redis,
    stream: str,
    group: str,
    entry_id: str,
    fields: Fields | None,
    reason: str,
    failures: int,
    now_ms: int,
    len_max: int = DEAD_LETTER_LEN_MAX,
) -> None:
    """Move one pending entry to the dead letters; RedisError leaves it pending."""
    copy: dict[Any, Any] = {}
    for key, value in (fields or {}).items():
        try:
            name, text = text_of(key), text_of(value)
        except UnicodeDecodeError:
            continue
        if name in TRIGGER_FIELDS:
            copy[name] = text
    copy |= {"id": entry_id, "reason": reason, "failures": str(failures)}
    copy["parked_ms"] = str(now_ms)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xadd(dead_letter_stream(stream), copy, maxlen=len_max, approximate=False)
        pipe.xack(stream, group, entry_id)
        pipe.hdel(failures_key(stream), entry_id)
        await pipe.execute()


async def read_dead_letters(
    redis: Redis, count: int, streams: list[tuple[str, int | None]] | None = None
) -> tuple[int, list[DeadLetter]]:
    """(how many are kept over all the streams' dead letters, the newest `count` of them,
    newest first). Each dead-letter stream is its own key (its own slot on a cluster): one
    XLEN and one XREVRANGE each, merged by parking time."""
    streams = relay_streams() if streams is None else streams

    async def one(stream: str, partition: int | None) -> tuple[int, list[DeadLetter]]:
        key = dead_letter_stream(stream)
        total = int(await redis.xlen(key))
        entries: Any = await redis.xrevrange(key, count=count) if count > 0 and total else []
        letters = []
        for dead_id, raw in entries:
            fields = {text_of(k): text_of(v) for k, v in raw.items()}
            trigger_id = fields.get("id", "")
            if partition is not None and trigger_id:
                trigger_id = f"{partition}/{trigger_id}"
            letters.append(
                DeadLetter(
                    text_of(dead_id),
                    trigger_id,
                    fields.get("player", ""),
                    fields.get("kind", ""),
                    fields.get("reason", ""),
                    int(fields.get("failures") or 0),
                    int(fields.get("parked_ms") or 0),
                )
            )
        return total, letters

    found = [await one(stream, partition) for stream, partition in streams]
    letters = [letter for _, some in found for letter in some]
    letters.sort(key=lambda letter: (letter.parked_ms, _id_order(letter.dead_id)), reverse=True)
    return sum(total for total, _ in found), letters[: max(count, 0)]


def _id_order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return (int(ms or 0), int(seq or 0))
