"""The store's layout: which keys hold a player's data, and the step from the last one.

Layout 1 kept a player's wallet (balance, batches, holds index, checkpoint) in a hash of its
own, `<player base>:wallet`. Layout 2 keeps those fields in the player's state hash beside
the rule's (keys.py), so a commit reads and writes one hash where it read and wrote two:
two Redis commands less per credit (docs/benchmark.md, the one-hash layout).

The store names its layout at LAYOUT_KEY. A server, and every `manor` tool that reads the
books, refuses a store of another layout (`check`): a layout-2 server on a layout-1 store
would read every wallet as empty and post on top of it. A store without the mark is marked
as this layout when it holds no layout-1 wallet (a new store). `manor store migrate`
(`migrate`) moves every layout-1 wallet into its state hash and marks the store; every
server of the old layout must be stopped first, since one would go on writing wallets
beside the moved ones.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from redis.asyncio import Redis, RedisCluster

from server.store.keys import PREFIX, PlayerKeys, bucket_of, tag
from server.store.store import Store

LAYOUT = 2
LAYOUT_KEY = f"{PREFIX}:{{layout}}"
LEGACY_WALLET_MATCH = f"{PREFIX}:{{b*}}:*:wallet"
LEGACY_WALLET_RE = re.compile(rb"^" + PREFIX.encode() + rb":\{b(\d+)\}:(.+):wallet$", re.DOTALL)
SCAN_COUNT = 1000  # keys a SCAN step looks at, per primary
MIGRATE_IN_FLIGHT = 200  # merge_wallet.lua calls sent before their answers are awaited


class LayoutRefused(Exception):
    """The store's layout is not this server's: one line for the operator."""


@dataclass(slots=True)
class Migration:
    wallets: int = 0  # layout-1 wallets moved into their state hash
    fields: int = 0  # fields they held


def legacy_wallet_key(player_id: str) -> str:
    """The key of a player's wallet hash in layout 1."""
    return f"{PREFIX}:{tag(bucket_of(player_id))}:{player_id}:wallet"


def legacy_wallet(key: bytes) -> str | None:
    """The player whose layout-1 wallet `key` is, or None for any other key (a player id
    may hold `:`, so the bucket must be the player's own)."""
    found = LEGACY_WALLET_RE.match(key)
    if found is None:
        return None
    player_id = found.group(2).decode()
    return player_id if bucket_of(player_id) == int(found.group(1)) else None


async def _legacy_wallets(redis: Redis | RedisCluster) -> AsyncIterator[str]:
    """Every player with a layout-1 wallet hash (SCAN: on a cluster, of every primary)."""
    async for key in redis.scan_iter(match=LEGACY_WALLET_MATCH, count=SCAN_COUNT, _type="hash"):
        player_id = legacy_wallet(key)
        if player_id is not None:
            yield player_id


async def check(redis: Redis | RedisCluster) -> None:
    """LayoutRefused unless the store is of this layout; a new store is marked so."""
    raw = await redis.get(LAYOUT_KEY)
    if raw is not None:
        if int(raw) == LAYOUT:
            return
        raise LayoutRefused(
            f"the store is of layout {int(raw)} and this server of layout {LAYOUT}: "
            "run the server version that wrote it"
        )
    async for player_id in _legacy_wallets(redis):
        raise LayoutRefused(
            f"the store is of layout 1 (player {player_id!r} has a wallet hash of its own) "
            f"and this server of layout {LAYOUT}: stop every server, then run "
            "`manor store migrate` (docs/operations.md)"
        )
    await redis.set(LAYOUT_KEY, LAYOUT, nx=True)
    await check(redis)  # another process may have marked it meanwhile, with another layout


async def migrate(store: Store) -> Migration:
    """Move every layout-1 wallet into its player's state hash, then mark the store. Safe
    to run again, and to resume after a crash: a moved wallet is gone, so it is not moved
    twice, and the mark is written only once every wallet is moved."""
    raw = await store.redis.get(LAYOUT_KEY)
    if raw is not None and int(raw) > LAYOUT:
        raise LayoutRefused(f"the store is of layout {int(raw)}, newer than this tool's {LAYOUT}")
    done = Migration()
    batch: list[str] = []
    async for player_id in _legacy_wallets(store.redis):
        batch.append(player_id)
        if len(batch) >= MIGRATE_IN_FLIGHT:
            await _merge(store, batch, done)
            batch = []
    await _merge(store, batch, done)
    await store.redis.set(LAYOUT_KEY, LAYOUT)
    return done


async def _merge(store: Store, players: list[str], done: Migration) -> None:
    """One merge_wallet.lua call per player, all in flight at once."""
    got = await asyncio.gather(
        *(
            store.durable_script("merge_wallet", (legacy_wallet_key(p), PlayerKeys(p).state), ())
            for p in players
        )
    )
    for player_id, (status, moved) in zip(players, got, strict=True):
        if status == b"CLASH":
            raise LayoutRefused(
                f"player {player_id!r}: the state hash has a field of the wallet's already; "
                "nothing of this player was moved (the others were: run it again once fixed)"
            )
        if status == b"ok":
            done.wallets += 1
            done.fields += int(moved)
