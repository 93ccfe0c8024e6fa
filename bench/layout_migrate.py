"""How long `manor store migrate` takes: layout-1 wallets moved per second.

`python -m bench.layout_migrate [--players N] [--store one|cluster]` writes N players as a
layout-1 server left them (a state hash with a sign-in field, a wallet hash with balance,
seq, head and a batch, a journal of one entry: three keys each) on a fresh embedded store
with appendfsync always, then runs server/store/layout.py's `migrate` as the command does
(each wallet into its state hash, then each state hash's batch packed: two SCANs, two
scripts per player) and prints players per second and the time per million keys.
What it must show: an operator can plan the upgrade's stop from the store's size.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench.stores import CLUSTER_STORE, ONE_STORE, label, started_store
from server.store import layout
from server.store.keys import PlayerKeys
from server.store.store import Store, connect

PLAYERS_MAX = 1_000_000
WRITE_BATCH = 500


async def fill(store: Store, players: int) -> int:
    """Layout-1 players 0 .. players - 1; returns the keys written."""
    for start in range(0, players, WRITE_BATCH):
        commands = []
        for n in range(start, min(start + WRITE_BATCH, players)):
            keys = PlayerKeys(f"p{n}")
            wallet = ("bal", 10, "seq", 1, "head", "ab" * 20, "b:20270630", 10)
            commands += [
                ("HSET", keys.state, "ver", 1, "signin", b"\x82\xa1d\xaa2026-12-01\xa1s\x01"),
                ("HSET", layout.legacy_wallet_key(f"p{n}"), *wallet),
                ("RPUSH", keys.journal, b"x" * 40),
            ]
        await store.call_many(*commands)
    return 3 * players


async def run(players: int, cluster: bool) -> dict[str, float]:
    shape = CLUSTER_STORE if cluster else ONE_STORE
    with (
        tempfile.TemporaryDirectory() as folder,
        started_store(Path(folder), shape) as (url, _),
    ):
        store = Store(connect(url))
        try:
            await store.load_scripts()
            keys = await fill(store, players)
            started = time.perf_counter()
            done = await layout.migrate(store)
            elapsed_s = time.perf_counter() - started
        finally:
            await store.close()
    if (done.wallets, done.packed) != (players, players):
        raise RuntimeError(f"moved {done.wallets} and packed {done.packed} of {players}")
    figures = {
        "players": players,
        "keys": keys,
        "seconds": elapsed_s,
        "wallets_per_s": players / elapsed_s,
        "s_per_million_keys": elapsed_s / keys * 1e6,
    }
    print(
        f"layout migrate ({label(shape)}): {players} players (layout 1 -> 3) among {keys} "
        f"keys in {elapsed_s:.1f} s: {figures['wallets_per_s']:.0f} players/s, "
        f"{figures['s_per_million_keys']:.1f} s per million keys"
    )
    return figures


def main(argv: list[str] | None = None) -> None:
    top = argparse.ArgumentParser(prog="python -m bench.layout_migrate", description=__doc__)
    top.add_argument("--players", type=int, default=100_000)
    top.add_argument("--store", choices=["one", "cluster"], default="one")
    args = top.parse_args(argv)
    if not 1 <= args.players <= PLAYERS_MAX:
        top.error(f"--players must be 1..{PLAYERS_MAX}")
    asyncio.run(run(args.players, args.store == "cluster"))


if __name__ == "__main__":
    main()
