"""Expiry of coin batches for wallets nobody touches (the daily sweep) and the warnings a
week ahead. Every commit expires batches on touch too (commit.lua)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from game_rules import commerce as rule
from game_rules.notify import collapse_key
from server.ledger.commit import Commit, apply
from server.ledger.ledger import Wallet, batch_int
from server.ops import triggers
from server.ops.components import pack
from server.pipeline import Services
from server.store.keys import BUCKETS, PlayerKeys, players_index

SWEEP_SCAN_COUNT = 500  # players per SSCAN page


async def _each_wallet(services: Services) -> AsyncIterator[tuple[str, Wallet]]:
    store = services.store
    for bucket in range(BUCKETS):
        cursor = 0
        while True:
            cursor, members = await store.call(
                "SSCAN", players_index(bucket), cursor, "COUNT", SWEEP_SCAN_COUNT
            )
            cursor = int(cursor)
            players = [m.decode() for m in members]
            if players:
                wallets = await store.call_many(
                    *[("HGETALL", PlayerKeys(p).state) for p in players]
                )
                for player, raw in zip(players, wallets, strict=True):
                    yield player, Wallet.from_hash(raw)
            if cursor == 0:
                break


async def sweep_expiry(services: Services) -> int:
    """The boundary job: every wallet holding an expired batch, or a hold past its time,
    gets a commit, which expires the batch and voids the hold (commit.lua does both).
    Returns the wallets swept."""
    rules = services.rulebook.rules
    now_ms = services.clock.now_ms()
    swept = 0
    async for player, wallet in _each_wallet(services):
        lapsed = wallet.held_at(now_ms) != wallet.held
        if lapsed or rule.expired_batches(wallet.batches, rules, now_ms):
            await apply(services.store, PlayerKeys(player), Commit(), now_ms)
            swept += 1
    return swept


async def warn_expiring(services: Services) -> int:
    """Warn, once per batch, the players whose coins expire within warn_days."""
    rules = services.rulebook.rules
    now_ms = services.clock.now_ms()
    warned = 0
    async for player, wallet in _each_wallet(services):
        for batch, coins, days_left in rule.expiring_batches(wallet.batches, rules, now_ms):
            keys = PlayerKeys(player)
            data = {"expires": batch.isoformat(), "coins": coins, "days_left": days_left}
            field = f"warned:{batch_int(batch)}"
            commit = Commit(pushes=[("coins_expiring", pack(data))], records=[(field, b"", b"1")])
            done = await apply(services.store, keys, commit, now_ms)
            if done.status != "ok":
                continue  # warned already (RECORD_CONFLICT)
            warned += 1
            if done.receivers and done.receivers[0] == 0:
                key = collapse_key("expiry", player, batch=batch)
                await triggers.offer(services, player, "coins_expiring", key, data, now_ms)
    return warned
