"""Credits that cross slots: a steal or a watering takes from one player's crop (step 1,
on the owner's slot, with an order appended to the bucket's outbox in the same script) and
credits another player (step 2, on that player's slot, idempotent by transfer id).

The process that made the order completes it at once; the relay completes whatever a
crash left behind. Invariant, per source: coins ordered = coins credited + in flight.

An operator's reversal of such a credit debits coins back to `mint:<source>`, which nets
them out of the mint's balance; the reversal's commit counts them in the player's bucket
stats (`<source>:reversed`), so coins credited = minus the mint's balance + coins reversed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import date
from typing import Any, cast

import msgpack
from redis.asyncio import Redis

from server.ledger.commit import Commit, CommitResult, apply
from server.ledger.ledger import Transfer, batch_date, batch_int
from server.store.keys import BUCKETS, PlayerKeys, outbox, stats, sys_accounts
from server.store.store import Store

log = logging.getLogger(__name__)

RELAY_ORDERS_PER_BUCKET_MAX = 100
RELAY_GRACE_MS = 5_000  # younger orders are still being completed by their own process
OUTBOX_SOURCES = ("steal", "water")


@dataclass(frozen=True, slots=True)
class Order:
    transfer_id: str
    to: str
    coins: int
    source: str
    batch: date
    at_ms: int
    ref: str = ""

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb(
            {
                "id": self.transfer_id,
                "to": self.to,
                "coins": self.coins,
                "src": self.source,
                "batch": batch_int(self.batch),
                "at": self.at_ms,
                "ref": self.ref,
            }
        )
        return packed

    @classmethod
    def decode(cls, raw: bytes) -> Order:
        d = msgpack.unpackb(raw, raw=False)
        return cls(
            d["id"], d["to"], d["coins"], d["src"], batch_date(d["batch"]), d["at"], d["ref"]
        )

    def commit_entry(self) -> tuple[str, int, bytes]:
        """The (source, coins, bytes) triple commit.lua appends to the outbox."""
        return (self.source, self.coins, self.encode())

    def transfer(self) -> Transfer:
        return Transfer(
            self.transfer_id, "c", self.coins, f"mint:{self.source}", self.batch, self.ref
        )


async def complete(
    store: Store,
    bucket: int,
    raw: bytes,
    now_ms: int,
    reply_key: str | None = None,
    reply_body: bytes = b"",
    asked_by_socket: bool = False,
) -> CommitResult:
    """Credit the order's player (idempotent), then drop the order from the outbox.
    `asked_by_socket`: the player's own socket asked and reads the balance in its reply
    (Commit.asked_by_socket); the relay's completions are nobody's request."""
    order = Order.decode(raw)
    commit = Commit(
        transfers=[order.transfer()], reply_body=reply_body, asked_by_socket=asked_by_socket
    )
    done = await apply(store, PlayerKeys(order.to), commit, now_ms, reply_key=reply_key)
    if done.status in ("ok", "exists"):
        await store.call("LREM", outbox(bucket), 1, raw)
    else:  # a credit cannot be refused unless the order is corrupt: keep it, say so
        log.error("outbox order %s refused: %s", order.transfer_id, done.status)
    return done


async def relay(store: Store, now_ms: int, grace_ms: int = RELAY_GRACE_MS) -> int:
    """Complete the orders older than `grace_ms` in every bucket; return how many."""
    pages = await asyncio.gather(
        *(
            store.call("LRANGE", outbox(b), 0, RELAY_ORDERS_PER_BUCKET_MAX - 1)
            for b in range(BUCKETS)
        )
    )
    stale = [
        (b, raw)
        for b, page in enumerate(pages)
        for raw in page
        if Order.decode(raw).at_ms <= now_ms - grace_ms
    ]
    await asyncio.gather(*(complete(store, b, raw, now_ms) for b, raw in stale))
    return len(stale)


class Relay:
    """This process's outbox relay (a scheduled job): `relay` every pass, counting the
    buckets it read (Timers.polls' like)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.polls = 0

    async def run(self, now_ms: int) -> int:
        self.polls += BUCKETS
        return await relay(self.store, now_ms)


@dataclass
class FlightReport:
    ordered: dict[str, int]
    credited: dict[str, int]  # ever credited: minus the mint's balance + reversed
    in_flight: dict[str, int]
    reversed: dict[str, int] = field(default_factory=lambda: {s: 0 for s in OUTBOX_SOURCES})

    @property
    def problems(self) -> list[str]:
        return [
            f"outbox {source}: ordered {self.ordered[source]} != credited "
            f"{self.credited[source]} + in flight {self.in_flight[source]}"
            for source in OUTBOX_SOURCES
            if self.ordered[source] != self.credited[source] + self.in_flight[source]
        ]


async def audit(redis: Redis) -> FlightReport:
    """Coins ordered from crops vs credited to players vs still in an outbox."""
    report = FlightReport(*({s: 0 for s in OUTBOX_SOURCES} for _ in range(4)))
    for bucket in range(BUCKETS):
        counters = cast(dict[bytes, bytes], await redis.hgetall(stats(bucket)))
        minted = cast(
            list[Any],
            await redis.hmget(sys_accounts(bucket), [f"mint:{s}" for s in OUTBOX_SOURCES]),
        )
        orders = cast(list[bytes], await redis.lrange(outbox(bucket), 0, -1))
        for source, mint in zip(OUTBOX_SOURCES, minted, strict=True):
            report.ordered[source] += int(counters.get(f"{source}:ordered".encode(), 0))
            reversed_coins = int(counters.get(f"{source}:reversed".encode(), 0))
            report.reversed[source] += reversed_coins
            report.credited[source] += reversed_coins - int(mint or 0)
        for raw in orders:
            order = Order.decode(raw)
            report.in_flight[order.source] += order.coins
    return report
