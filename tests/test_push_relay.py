"""The push relay against a real store and a real HTTP receiver on a loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import uvicorn
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.jobs.push_relay import (
    Outcome,
    backoff_ms,
    classify,
    parse_retry_after_ms,
    run_relay,
    sign,
    verify_signature,
)
from server.store.embedded import free_port
from server.store.keys import (
    LEGACY_TRIGGER_STREAM,
    TRIGGER_STREAM_LEN_MAX,
    trigger_partition,
    trigger_stream_of,
    trigger_streams,
)
from tests.live import running
from tests.trigger_streams import players_in

SECRET = b"push-secret-0123456789abcdef"
GROUP = "push-gateway"
FAST = {"backoff_ms_base": 10, "backoff_ms_max": 50, "read_block_ms": 50, "claim_idle_ms": 60_000}
ATTEMPT_POLLS_MAX = 200  # x 0.05 s: how long a test waits for the first delivery attempt


@dataclass
class Received:
    at_s: float
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    received: list[Received] = field(default_factory=list)
    plan: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # then 200s
    failing: set[str] = field(default_factory=set)  # players whose triggers always get 500
    answer_delay_s: float = 0.0
    in_flight: int = 0
    in_flight_peak: int = 0
    arrived: list[str] = field(default_factory=list)  # X-Manor-Delivery, as requests come in
    holding: bool = False  # requests wait for `release` (a receiver that hangs)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.received]


@contextlib.asynccontextmanager
async def receiving(port: int | None = None) -> AsyncIterator[Receiver]:
    """A tiny webhook on real uvicorn in the test's loop; answers by `plan`, then 200."""
    port = port or free_port()
    receiver = Receiver(f"http://127.0.0.1:{port}/hook")

    async def hook(request: Request) -> Response:
        body = await request.body()
        receiver.arrived.append(request.headers["x-manor-delivery"])
        receiver.in_flight += 1
        receiver.in_flight_peak = max(receiver.in_flight_peak, receiver.in_flight)
        await asyncio.sleep(receiver.answer_delay_s)
        if receiver.holding:
            await receiver.release.wait()
        receiver.in_flight -= 1
        receiver.received.append(Received(time.monotonic(), dict(request.headers), body))
        status, headers = receiver.plan.pop(0) if receiver.plan else (200, {})
        if json.loads(body).get("player") in receiver.failing:
            status, headers = 500, {}
        return Response(status_code=status, headers=headers)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    async with running(config):
        try:
            yield receiver
        finally:
            receiver.release.set()  # held requests end, so uvicorn can shut down


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as running:
        yield running


ALL_STREAMS = [*trigger_streams(), LEGACY_TRIGGER_STREAM]


async def add(redis: Redis, player: str, kind: str = "crop_ripe", **data: Any) -> str:
    """XADD a trigger to the player's partition, as the app does; its delivery id."""
    entry_id = await redis.xadd(
        trigger_stream_of(player),
        {
            "player": player,
            "kind": kind,
            "collapse_key": f"{kind}:{player}",
            "data": json.dumps(data, separators=(",", ":")),
            "created_ms": "1700000000000",
        },
        maxlen=TRIGGER_STREAM_LEN_MAX,
        approximate=True,
    )
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    return f"{trigger_partition(player)}/{text}"


async def pending(redis: Redis) -> int:
    """The group's pending entries over every trigger stream."""
    total = 0
    for stream in ALL_STREAMS:
        if await redis.exists(stream) and await redis.xinfo_groups(stream):
            total += int((await redis.xpending(stream, GROUP))["pending"])
    return total


async def failure_counts_left(redis: Redis) -> int:
    return sum([await redis.exists(f"{stream}:failures") for stream in ALL_STREAMS])


async def relay(redis: Redis, url: str, consumer: str = "a", **options: Any) -> Any:
    settings = {**FAST, "iterations_max": 1, "rng": random.Random(7), **options}
    stats = await run_relay(redis, url, SECRET, consumer=consumer, **settings)
    settled = stats.delivered + stats.dropped + stats.dead_lettered + stats.undelivered
    assert stats.read + stats.claimed == settled
    return stats


async def test_relay_delivers_each_trigger_once_signed_and_acked(
    redis: Redis, receiver: Receiver
) -> None:
    ids = [await add(redis, p, plot=i) for i, p in enumerate(["p1", "p2", "p1", "p3", "p1"])]
    stats = await relay(redis, receiver.url)
    assert (stats.read, stats.delivered, stats.dropped, stats.undelivered) == (5, 5, 0, 0)
    assert sorted(r.headers["x-manor-delivery"] for r in receiver.received) == sorted(ids)
    for got in receiver.received:
        assert got.headers["content-type"] == "application/json"
        now_ms = int(time.time() * 1000)
        assert verify_signature(
            SECRET,
            got.headers["x-manor-timestamp"],
            got.body,
            got.headers["x-manor-signature"],
            now_ms,
        )
    by_id = {p["id"]: p for p in receiver.payloads()}
    assert by_id[ids[1]] == {
        "id": ids[1],
        "player": "p2",
        "kind": "crop_ripe",
        "collapse_key": "crop_ripe:p2",
        "data": {"plot": 1},
        "created_ms": 1700000000000,
    }
    p1_order = [p["id"] for p in receiver.payloads() if p["player"] == "p1"]
    assert p1_order == [ids[0], ids[2], ids[4]]  # one player's triggers in stream order
    assert await pending(redis) == 0 and stats.pending_left == 0
    again = await relay(redis, receiver.url)
    assert again.delivered == 0 and len(receiver.received) == 5


async def test_relay_concurrency_bounded_by_in_flight_max(redis: Redis, receiver: Receiver) -> None:
    for i in range(6):
        await add(redis, f"p{i}")
    receiver.answer_delay_s = 0.05
    stats = await relay(redis, receiver.url, in_flight_max=2)
    assert stats.delivered == 6 and receiver.in_flight_peak == 2


async def test_relay_failing_receiver_retried_then_delivered_once(
    redis: Redis, receiver: Receiver
) -> None:
    entry_id = await add(redis, "p1")
    receiver.plan = [(500, {}), (503, {})]
    stats = await relay(redis, receiver.url, attempts_max=5)
    assert (stats.delivered, stats.retried, stats.undelivered) == (1, 2, 0)
    assert [r.headers["x-manor-delivery"] for r in receiver.received] == [entry_id] * 3
    assert await pending(redis) == 0


async def test_relay_429_retry_after_honoured_and_bounded(redis: Redis, receiver: Receiver) -> None:
    await add(redis, "p1")
    receiver.plan = [(429, {"Retry-After": "30"})]
    stats = await relay(redis, receiver.url, backoff_ms_max=300)
    assert stats.delivered == 1 and stats.retried == 1
    gap_s = receiver.received[1].at_s - receiver.received[0].at_s
    assert 0.29 <= gap_s < 2.0  # 30 s asked, capped at backoff_ms_max; plain backoff is ~10 ms


async def test_relay_permanent_4xx_dropped_and_acked(redis: Redis, receiver: Receiver) -> None:
    await add(redis, "p1")
    await add(redis, "p2")
    receiver.plan = [(400, {})]
    stats = await relay(redis, receiver.url)
    assert (stats.delivered, stats.dropped, stats.retried) == (1, 1, 0)
    assert len(receiver.received) == 2 and await pending(redis) == 0


async def test_relay_401_held_pending_not_dropped(redis: Redis, receiver: Receiver) -> None:
    await add(redis, "p1")
    receiver.plan = [(401, {})]
    stats = await relay(redis, receiver.url)
    assert (stats.delivered, stats.dropped, stats.undelivered, stats.retried) == (0, 0, 1, 0)
    assert await pending(redis) == 1


async def test_relay_malformed_entry_dropped_without_request(
    redis: Redis, receiver: Receiver
) -> None:
    await redis.xadd(trigger_stream_of("p1"), {"player": "p1", "kind": "stolen", "data": "{"})
    good = await add(redis, "p2")
    stats = await relay(redis, receiver.url)
    assert (stats.delivered, stats.dropped) == (1, 1)
    assert [p["id"] for p in receiver.payloads()] == [good]
    assert await pending(redis) == 0


async def test_relay_dead_receiver_leaves_pending_then_claimed_by_another(
    redis: Redis,
) -> None:
    port = free_port()  # nothing listens: connection refused
    url = f"http://127.0.0.1:{port}/hook"
    ids = [await add(redis, p) for p in ("p1", "p2", "p3")]
    down = await relay(redis, url, attempts_max=2)
    assert (down.read, down.delivered, down.dropped, down.undelivered) == (3, 0, 0, 3)
    assert await pending(redis) == 3 and down.pending_left == 3
    await asyncio.sleep(0.15)
    async with receiving(port) as receiver:
        up = await relay(redis, url, consumer="b", claim_idle_ms=100)
    assert (up.claimed, up.read, up.delivered) == (3, 0, 3)
    assert sorted(r.headers["x-manor-delivery"] for r in receiver.received) == sorted(ids)
    assert await pending(redis) == 0


async def pending_entries(redis: Redis) -> int:
    """Entries read by the gateway's group and not acknowledged, over every stream."""
    total = 0
    for stream in ALL_STREAMS:
        try:
            total += int((await redis.xpending(stream, GROUP))["pending"])
        except ResponseError:  # no such stream or group yet
            continue
    return total


async def test_relay_stop_ends_loop_promptly(redis: Redis, receiver: Receiver) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_relay(redis, receiver.url, SECRET, consumer="a", stop=stop, read_block_ms=1_000)
    )
    await asyncio.sleep(0.2)
    await add(redis, "p1")
    for _ in range(ATTEMPT_POLLS_MAX):  # delivered and acknowledged, however loaded
        if (receiver.received and not await pending_entries(redis)) or task.done():
            break
        await asyncio.sleep(0.05)
    started_s = time.monotonic()
    stop.set()
    stats = await asyncio.wait_for(task, 3.0)
    assert time.monotonic() - started_s < 1.5
    assert stats.delivered == 1 and stats.pending_left == 0


async def test_relay_stop_during_backoff_leaves_entry_pending(redis: Redis) -> None:
    """Stopped while it waits to retry a failed delivery: the entry stays pending. The
    stop comes once the webhook has answered 500, not after a guessed sleep (a loaded
    machine read the entry later than 0.3 s)."""
    await add(redis, "p1")
    stop = asyncio.Event()
    async with receiving() as receiver:
        receiver.failing.add("p1")
        task = asyncio.create_task(
            relay(redis, receiver.url, stop=stop, backoff_ms_base=10_000, backoff_ms_max=10_000)
        )
        for _ in range(ATTEMPT_POLLS_MAX):
            if receiver.received or task.done():
                break
            await asyncio.sleep(0.05)
        assert receiver.received, "the relay never tried the webhook"
        stop.set()
        stats = await asyncio.wait_for(task, 2.0)
    assert (stats.delivered, stats.undelivered, stats.pending_left) == (0, 1, 1)


async def test_relay_existing_group_position_kept(redis: Redis, receiver: Receiver) -> None:
    await add(redis, "old")
    for stream in trigger_streams():
        await redis.xgroup_create(stream, GROUP, "$", mkstream=True)
    await add(redis, "new")
    await relay(redis, receiver.url)
    assert [p["player"] for p in receiver.payloads()] == ["new"]


async def test_relay_bad_settings_rejected(redis: Redis) -> None:
    with pytest.raises(ValueError, match="secret"):
        await run_relay(redis, "http://127.0.0.1:1/", b"short", consumer="a")
    with pytest.raises(ValueError, match="http"):
        await run_relay(redis, "ftp://127.0.0.1/", SECRET, consumer="a")
    with pytest.raises(ValueError, match="attempts_max"):
        await run_relay(redis, "http://127.0.0.1:1/", SECRET, consumer="a", attempts_max=0)


NOW_MS = 1_700_000_000_000
BODY = b'{"id":"1-0","player":"p1"}'


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "now_ms", "valid"),
    [
        (SECRET, NOW_MS, BODY, NOW_MS, True),
        (SECRET, str(NOW_MS), BODY, NOW_MS + 299_000, True),
        (SECRET, NOW_MS, BODY.replace(b"p1", b"p2"), NOW_MS, False),  # tampered body
        (SECRET, NOW_MS, BODY, NOW_MS + 300_001, False),  # stale
        (SECRET, NOW_MS, BODY, NOW_MS - 300_001, False),  # from the future
        (b"another-secret-0123456789", NOW_MS, BODY, NOW_MS, False),
        (SECRET, "17e11", BODY, NOW_MS, False),
        (SECRET, "", BODY, NOW_MS, False),
    ],
)
def test_verify_signature_cases(
    secret: bytes, timestamp: int | str, body: bytes, now_ms: int, valid: bool
) -> None:
    header = sign(SECRET, NOW_MS, BODY)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify_signature(secret, timestamp, body, header, now_ms) is valid


def test_verify_signature_tampered_timestamp_or_header() -> None:
    header = sign(SECRET, NOW_MS, BODY)
    assert not verify_signature(SECRET, NOW_MS + 1, BODY, header, NOW_MS)
    assert not verify_signature(SECRET, NOW_MS, BODY, header.upper(), NOW_MS)
    assert not verify_signature(SECRET, NOW_MS, BODY, "sha256=é", NOW_MS)
    assert not verify_signature(SECRET, NOW_MS, BODY, header[7:], NOW_MS)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.DELIVERED),
        (204, Outcome.DELIVERED),
        (400, Outcome.DROP),
        (410, Outcome.DROP),
        (422, Outcome.DROP),
        (401, Outcome.HOLD),
        (403, Outcome.HOLD),
        (404, Outcome.HOLD),
        (301, Outcome.HOLD),
        (408, Outcome.RETRY),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (503, Outcome.RETRY),
    ],
)
def test_classify_status(status: int, outcome: Outcome) -> None:
    assert classify(status) is outcome


def test_parse_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    now_ms = int(now.timestamp() * 1000)
    assert parse_retry_after_ms("3", now_ms) == 3000
    assert parse_retry_after_ms(format_datetime(now + timedelta(seconds=7), True), now_ms) == 7000
    assert parse_retry_after_ms(format_datetime(now - timedelta(seconds=7), True), now_ms) == 0
    for bad in (None, "", "soon", "-1", "1.5", "9" * 40, "²"):
        assert parse_retry_after_ms(bad, now_ms) is None


def test_backoff_grows_capped_with_seeded_jitter() -> None:
    rng = random.Random(1)
    delays = [backoff_ms(attempt, 200, 30_000, rng) for attempt in range(1, 12)]
    ceilings = [min(30_000, 200 << (a - 1)) for a in range(1, 12)]
    assert all(c // 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    again = random.Random(1)
    assert delays == [backoff_ms(attempt, 200, 30_000, again) for attempt in range(1, 12)]
    assert backoff_ms(1_000, 200, 30_000, rng) <= 30_000


async def test_manor_push_relay_command_forwards_and_stops_on_sigterm(
    redis: Redis, redis_server: Any, receiver: Receiver
) -> None:
    """The operator's command: a real subprocess, the real store, a real webhook."""
    import os
    import signal
    import sys

    await add(redis, "ann", coins=3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANOR_")}
    env |= {"MANOR_REDIS_URL": redis_server.url, "MANOR_PUSH_SECRET": SECRET.decode()}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.cli", "push-relay", "--webhook", receiver.url, env=env
    )
    try:
        deadline = time.monotonic() + 20
        while not receiver.received:
            assert time.monotonic() < deadline, "the relay delivered nothing"
            await asyncio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    got = receiver.received[0]
    assert verify_signature(
        SECRET,
        got.headers["x-manor-timestamp"],
        got.body,
        got.headers["x-manor-signature"],
        int(time.time() * 1000),
    )
    assert receiver.payloads()[0]["data"] == {"coins": 3}
    assert await pending(redis) == 0


async def dead_letters(redis: Redis) -> list[dict[str, str]]:
    """Every stream's dead letters (each beside its stream), with the `delivery` id the
    webhook saw; in parking order within a stream."""
    letters = []
    for partition, stream in [*enumerate(trigger_streams()), (None, LEGACY_TRIGGER_STREAM)]:
        for _, fields in await redis.xrange(f"{stream}:dead"):
            letter = {k.decode(): v.decode() for k, v in fields.items()}
            prefix = "" if partition is None else f"{partition}/"
            letters.append(letter | {"delivery": prefix + letter["id"]})
    return letters


async def test_relay_parks_a_trigger_that_keeps_failing_in_the_dead_letter_stream(
    redis: Redis, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    poison = await add(redis, "bad", plot=1)
    good = [await add(redis, p) for p in ("p1", "p2")]
    receiver.failing = {"bad"}
    caplog.set_level("INFO", logger="server.jobs")
    totals = {"delivered": 0, "dead_lettered": 0}
    for turn in range(6):  # every turn claims the idle entry again: one failed pass each
        await asyncio.sleep(0.01)
        stats = await relay(
            redis, receiver.url, attempts_max=2, claim_idle_ms=1, dead_letter_after=3
        )
        totals["delivered"] += stats.delivered
        totals["dead_lettered"] += stats.dead_lettered
        if turn < 2:
            assert await pending(redis) == 1  # failed twice: still pending
    assert totals == {"delivered": 2, "dead_lettered": 1}
    assert await pending(redis) == 0  # parked, not retried for ever
    attempts = [r for r in receiver.received if r.headers["x-manor-delivery"] == poison]
    assert len(attempts) == 3 * 2  # 3 passes of 2 attempts, then never again
    assert sorted(p["id"] for p in receiver.payloads() if p["player"] != "bad") == sorted(good)
    [parked] = await dead_letters(redis)
    assert (parked["delivery"], parked["player"], parked["kind"], parked["failures"]) == (
        poison,
        "bad",
        "crop_ripe",
        "3",
    )
    assert "HTTP 500" in parked["reason"] and json.loads(parked["data"]) == {"plot": 1}
    assert not await failure_counts_left(redis)  # nothing left behind
    batches = [r.getMessage() for r in caplog.records if "push relay: batch" in r.getMessage()]
    assert batches and any("1 dead-lettered" in line for line in batches), batches
    poison_id = poison.split("/")[1]
    parked_logs = [
        r for r in caplog.records if r.levelname == "ERROR" and poison_id in r.getMessage()
    ]
    assert parked_logs


async def test_relay_a_down_receiver_parks_nothing_until_the_entries_are_old(
    redis: Redis,
) -> None:
    """Connection refused (or 502/503/504, timeouts) says the endpoint is down, not that
    the trigger is bad: no failure is counted, the entries wait. Past dead_letter_age_ms a
    failing entry is parked whatever the failure, so nothing is retried for ever."""
    url = f"http://127.0.0.1:{free_port()}/hook"
    for p in ("p1", "p2", "p3"):
        await add(redis, p)
    for _ in range(3):
        await asyncio.sleep(0.01)
        stats = await relay(redis, url, attempts_max=1, claim_idle_ms=1, dead_letter_after=1)
        assert (stats.dropped, stats.dead_lettered) == (0, 0)
    assert not await failure_counts_left(redis)
    assert await pending(redis) == 3
    await asyncio.sleep(0.01)
    aged = await relay(redis, url, attempts_max=1, claim_idle_ms=1, dead_letter_age_ms=5)
    assert aged.dead_lettered == 3 and await pending(redis) == 0
    letters = await dead_letters(redis)
    assert all(letter["reason"].startswith("expired: ") for letter in letters), letters


async def test_relay_rejected_and_malformed_entries_are_kept_as_dead_letters(
    redis: Redis, receiver: Receiver
) -> None:
    await redis.xadd(trigger_stream_of("p1"), {"player": "p1", "kind": "stolen", "data": "{"})
    rejected = await add(redis, "p2")
    receiver.plan = [(422, {})]
    stats = await relay(redis, receiver.url)
    assert (stats.dropped, stats.dead_lettered) == (2, 0)
    letters = sorted(await dead_letters(redis), key=lambda letter: letter["reason"])
    assert [letter["reason"].split(":")[0] for letter in letters] == ["malformed", "rejected"]
    assert letters[1]["delivery"] == rejected and "HTTP 422" in letters[1]["reason"]


async def test_the_dead_letter_stream_is_capped(redis: Redis, receiver: Receiver) -> None:
    players = players_in(5, 6)  # one partition: its dead-letter stream keeps the newest 4
    for player in players:
        await add(redis, player)
    receiver.plan = [(410, {})] * 6
    stats = await relay(redis, receiver.url, dead_letter_len_max=4)
    assert stats.dropped == 6 and stats.dead_letters == 4
    assert await redis.xlen(f"{trigger_stream_of(players[0])}:dead") == 4


async def test_manor_push_relay_dead_letters_view(
    redis: Redis, redis_server: Any, receiver: Receiver
) -> None:
    import os
    import sys

    await add(redis, "p1")
    receiver.plan = [(400, {})]
    await relay(redis, receiver.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANOR_")}
    env |= {"MANOR_REDIS_URL": redis_server.url}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        "push-relay",
        "--dead-letters",
        "5",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0, err
    lines = out.decode().splitlines()
    assert lines[0].startswith("dead letters: 1"), lines
    assert "p1" in lines[1] and "rejected: HTTP 400" in lines[1]
