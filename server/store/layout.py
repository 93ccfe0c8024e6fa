"""The store's layout: which keys and fields hold a player's data, and the steps between.

Layout 1 kept a player's wallet (balance, batches, holds index, checkpoint) in a hash of its
own, `<player base>:wallet`. Layout 2 keeps those fields in the player's state hash beside
the rule's (keys.py), so a commit reads and writes one hash where it read and wrote two:
two Redis commands less per credit (docs/benchmark.md, the one-hash layout). Layout 3
keeps the batches (`b:<day>` fields in layout 2) and the hold index (`h:<order>`) as one
field each, `bt` and `hx`, so that a commit reads the hash by name (HMGET) and not the
rule's components with it.

The store names its layout at LAYOUT_KEY. A server, and every `manor` tool that reads the
books, refuses a store of another layout (`check`): this server would read a layout-1
store's wallets as empty and a layout-2 store's batches as none, and post on top of them.
A store without the mark is marked as this layout when it holds no layout-1 wallet (a new
store). `manor store migrate` (`migrate`) takes the store through each step from its
layout to this one (1 -> 2: every wallet hash into its state hash; 2 -> 3: every state
hash's batch and hold fields packed) and marks the store; every server of an older layout
must be stopped first, since one would go on writing the old shape beside the new one.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from redis.asyncio import Redis, RedisCluster

from server.store.keys import PREFIX, PlayerKeys, bucket_of, tag
from server.store.store import Store

LAYOUT = 3
LAYOUT_KEY = f"{PREFIX}:{{layout}}"
LEGACY_WALLET_MATCH = f"{PREFIX}:{{b*}}:*:wallet"
LEGACY_WALLET_RE = re.compile(rb"^" + PREFIX.encode() + rb":\{b(\d+)\}:(.+):wallet$", re.DOTALL)
STATE_MATCH = f"{PREFIX}:{{b*}}:*:state"
STATE_RE = re.compile(rb"^" + PREFIX.encode() + rb":\{b(\d+)\}:(.+):state$", re.DOTALL)
SCAN_COUNT = 1000  # keys a SCAN step looks at, per primary
MIGRATE_IN_FLIGHT = 200  # migration scripts sent before their answers are awaited


class LayoutRefused(Exception):
    """The store's layout is not this server's: one line for the operator."""


@dataclass(slots=True)
class Migration:
    wallets: int = 0  # layout-1 wallets moved into their state hash
    fields: int = 0  # fields they held
    packed: int = 0  # state hashes whose layout-2 batch and hold fields were packed


def legacy_wallet_key(player_id: str) -> str:
    """The key of a player's wallet hash in layout 1."""
    return f"{PREFIX}:{tag(bucket_of(player_id))}:{player_id}:wallet"


def _player_of(pattern: re.Pattern[bytes], key: bytes) -> str | None:
    """The player whose key `key` is, by `pattern`, or None for any other key (a player id
    may hold `:`, so the bucket must be the player's own)."""
    found = pattern.match(key)
    if found is None:
        return None
    player_id = found.group(2).decode()
    return player_id if bucket_of(player_id) == int(found.group(1)) else None


def legacy_wallet(key: bytes) -> str | None:
    """The player whose layout-1 wallet `key` is, or None for any other key."""
    return _player_of(LEGACY_WALLET_RE, key)


async def _players(
    redis: Redis | RedisCluster, match: str, pattern: re.Pattern[bytes]
) -> AsyncIterator[str]:
    """Every player with a hash key of this shape (SCAN: on a cluster, of every primary)."""
    async for key in redis.scan_iter(match=match, count=SCAN_COUNT, _type="hash"):
        player_id = _player_of(pattern, key)
        if player_id is not None:
            yield player_id


def _legacy_wallets(redis: Redis | RedisCluster) -> AsyncIterator[str]:
    return _players(redis, LEGACY_WALLET_MATCH, LEGACY_WALLET_RE)


async def check(redis: Redis | RedisCluster) -> None:
    """LayoutRefused unless the store is of this layout; a new store is marked so."""
    raw = await redis.get(LAYOUT_KEY)
    if raw is not None:
        if int(raw) == LAYOUT:
            return
        if int(raw) < LAYOUT:
            raise LayoutRefused(
                f"the store is of layout {int(raw)} and this server of layout {LAYOUT}: "
                "stop every server, then run `manor store migrate` (docs/operations.md)"
            )
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
    """Take the store to this layout, then mark it: every layout-1 wallet into its
    player's state hash, then every state hash's layout-2 batch and hold fields packed.
    Safe to run again, and to resume after a crash: each step's script finds nothing to do
    on a player it did, and the mark is written only once every player is done."""
    raw = await store.redis.get(LAYOUT_KEY)
    if raw is not None and int(raw) > LAYOUT:
        raise LayoutRefused(f"the store is of layout {int(raw)}, newer than this tool's {LAYOUT}")
    done = Migration()
    for players, step in (
        (_legacy_wallets(store.redis), _merge),  # 1 -> 2
        (_players(store.redis, STATE_MATCH, STATE_RE), _pack),  # 2 -> 3
    ):
        batch: list[str] = []
        async for player_id in players:
            batch.append(player_id)
            if len(batch) >= MIGRATE_IN_FLIGHT:
                await step(store, batch, done)
                batch = []
        await step(store, batch, done)
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


async def _pack(store: Store, players: list[str], done: Migration) -> None:
    """One pack_wallet.lua call per player, all in flight at once."""
    got = await asyncio.gather(
        *(store.durable_script("pack_wallet", (PlayerKeys(p).state,), ()) for p in players)
    )
    for player_id, (status, _) in zip(players, got, strict=True):
        if status in (b"CLASH", b"BAD"):
            raise LayoutRefused(
                f"player {player_id!r}: its batch or hold fields cannot be packed "
                f"({status.decode()}); nothing of this player was changed (the others "
                "were: run it again once fixed)"
            )
        if status == b"ok":
            done.packed += 1
