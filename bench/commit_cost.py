"""Redis's cost of one credit commit alone: commit.lua through `apply`, no server, no socket,
beside the floor under it.

`python -m bench.commit_cost [--commits N] [--appendfsync always|everysec] [--shapes ...]
[--in-flight N]` prints, per shape, calls per second, Redis CPU per call (INFO cpu), the
calls the store ran per event-loop cycle (INFO stats) and, from INFO commandstats, the
commands per call and each command's µs (EVALSHA's time includes the commands the script
calls). Each shape runs on a fresh embedded store, `--in-flight` calls (100) in flight
through the server's own Store (its pipelined link):

- `commit`: a credited sign-in's commit.lua call, as `apply` makes it, its `balance` push
  published (as for a player with another socket open: the floors below publish too);
- `credit`: the same as the credit path of `make bench` sends it: asked by the player's
  only socket (its hash's `sk` is 1, as socket_lease.lua leaves it), so no push is built
  or published;
- `commit_manor`: the same on players whose hash also holds 480 bytes of the manor's
  rule components (`farm`, `daily`, `notify`, `thefts`), as a player of the farm game
  carries: what a commit costs when the hash holds more than the sign-in's field;
- `floor`: bench/lua/commit_floor.lua, the same Redis commands on the same keys with
  every value computed here: the commit without its logic;
- `commands`: those commands sent without a script, pipelined (not atomic): what the data
  model costs Redis by itself;
- `noop`: bench/lua/noop.lua, a script that does nothing, with the floor's keys and
  arguments: the cost of a script call;
- `one_hash_floor`: bench/lua/one_hash_floor.lua, the commands of the same credit if a
  player's state, wallet, transfer ids and stored replies were one hash (one HMGET, one
  HSET; journal, system accounts, inbox and push as today), every value computed here;
- `one_hash_min`: bench/lua/one_hash_min.lua, those commands with the least logic such a
  commit must run in Lua (its arguments read, the checks, the batch, the entry, the chain,
  the push): a lower bound of what a one-hash commit.lua would cost Redis.

Issue 10's Redis target is 25 µs per credited sign-in, the load's reads included.

A store cycle has a cost of its own (with appendfsync always, its `fdatasync`; the reads
and writes of its sockets), shared by the calls it runs: fewer calls in flight, fewer
calls a cycle, more Redis CPU per call. `--in-flight 24` gives a cycle about as many
credits as `make bench`'s credit path does at 100 connections (docs/benchmark.md).

This VM's speed drifts by tens of percent within minutes, so two scripts compare in CPU µs
only over many alternated rounds. `--instructions` counts instead: each shape's store runs
under valgrind's callgrind twice, for `--commits` ÷ 4 calls and for `--commits`, and the
difference of the totals over the difference of the calls is Redis's instructions per call
(start-up and shutdown cancel out; the count does not depend on the machine's load). Slow:
about half a minute per shape for 3 000 calls.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path

import msgpack

from bench.instructions import TOTALS
from server.ledger.commit import Commit, apply
from server.ledger.ledger import Transfer
from server.protocol import balance_push
from server.store.embedded import EmbeddedStore
from server.store.keys import PlayerKeys
from server.store.store import Store, connect

CONCURRENCY = 100  # calls in flight unless --in-flight says otherwise
IN_FLIGHT_MAX = 1000
PLAYERS = 1000
NOW_MS = 1_795_000_000_000
BATCH = date(2027, 6, 30)
BATCH_INT = 20270630
COMMITS_MAX = 1_000_000
LUA = Path(__file__).parent / "lua"
SHAPES = (
    "commit",
    "credit",
    "commit_manor",
    "floor",
    "commands",
    "noop",
    "one_hash_floor",
    "one_hash_min",
)
# commit_manor's components: the sizes of a farm player's, the bytes themselves arbitrary
MANOR_COMPONENTS = {
    "farm": b"f" * 300,
    "daily": b"d" * 40,
    "notify": b"n" * 60,
    "thefts": b"t" * 80,
}
SCRIPTS = {
    "floor": "commit_floor",
    "noop": "noop",
    "one_hash_floor": "one_hash_floor",
    "one_hash_min": "one_hash_min",
}

Call = Callable[[int], Awaitable[object]]
# The fields commit.lua reads of the player's one hash (layout 3).
WALLET_READ = ("ver", "pseq", "vs", "bal", "seq", "head", "held", "debt", "ck_seq", "bt", "hx")


def floor_args(n: int) -> tuple[PlayerKeys, list[str], list[bytes | str | int]]:
    """The keys and values of call n: player n mod PLAYERS, its (n div PLAYERS + 1)th credit
    of 10 coins, the entry, head, push and reply as commit.lua would make them."""
    player = f"p{n % PLAYERS}"
    keys = PlayerKeys(player)
    seq = n // PLAYERS + 1
    balance = 10 * seq
    entry = msgpack.packb([seq, NOW_MS // 1000, 1, 10, balance, [BATCH_INT, 10], False, 0])
    head = hashlib.sha1(entry).hexdigest()
    push = balance_push(balance, 10, seq)
    script_keys = [
        keys.state,
        keys.journal,
        keys.txids,
        keys.sys,
        keys.reply(f"i:{n}"),
        keys.push_channel,
    ]
    values: list[bytes | str | int] = [
        entry,
        f"signin:{player}:{n}",
        seq,
        balance,
        head,
        f"{BATCH_INT}={balance}",
        push,
        f"{balance}:r",
        b"x" * 20,
    ]
    return keys, script_keys, values


def one_hash_args(n: int) -> tuple[list[str], list[bytes | str | int]]:
    """one_hash_floor.lua's keys and values of call n (floor_args' player and credit)."""
    keys, _, v = floor_args(n)
    player_hash = keys.state  # the state key stands for the one hash
    script_keys = [player_hash, keys.journal, keys.sys, keys.push_channel]
    batches = msgpack.packb([BATCH_INT, v[3]])
    values = [v[0], f"t:{v[1]}", v[2], v[3], v[4], batches, v[6], f"r:i:{n}", v[7], v[8]]
    return script_keys, values


def one_hash_min_args(n: int) -> tuple[list[str], list[bytes | str | int]]:
    """one_hash_min.lua's keys and arguments of call n: the player's (n div PLAYERS + 1)th
    credit, on the version and stamp its previous call left (as a remembered snapshot)."""
    script_keys, _ = one_hash_args(n)
    player = f"p{n % PLAYERS}"
    header = [
        str(NOW_MS + n),
        n // PLAYERS,
        "" if n < PLAYERS else f"{n - PLAYERS:016x}",
        f"{n:016x}",
        f"i:{n}",
        "r",
        "signin",
        "x" * 20,
        "PUBLISH",
    ]
    # Its transfer as commit.lua read one before 2026-12-03 (a msgpack array, not a struct).
    credit = [f"signin:{player}:{n}", "c", 10, "mint:signin", BATCH_INT, "", 1]
    return script_keys, [lua_arg(header), lua_arg(credit)]


def lua_arg(value: object) -> bytes:
    """`value` as one msgpack argument of a bench script: no bin type, which Redis's
    cmsgpack cannot read (bytes go as str)."""
    packed: bytes = msgpack.packb(value, use_bin_type=False)
    return packed


async def caller(store: Store, shape: str) -> Call:
    """One call of the shape, for call number n."""
    if shape == "commit_manor":
        fields = [part for pair in MANOR_COMPONENTS.items() for part in pair]
        await store.call_many(
            *[("HSET", PlayerKeys(f"p{n}").state, *fields) for n in range(PLAYERS)]
        )
    if shape == "credit":  # each player's only socket is open (socket_lease.lua's `sk`)
        await store.call_many(
            *[("HSET", PlayerKeys(f"p{n}").state, "sk", 1) for n in range(PLAYERS)]
        )
    if shape in ("commit", "credit", "commit_manor"):

        async def commit(n: int) -> object:
            player = f"p{n % PLAYERS}"
            keys = PlayerKeys(player)
            credit = Transfer(f"signin:{player}:{n}", "c", 10, "mint:signin", BATCH)
            change = Commit(
                fields={"signin": b"x" * 20},
                transfers=[credit],
                reply_body=b"r",
                # As on a socket's remembered state (the credit path): the stamp the
                # player's previous commit wrote, PLAYERS calls earlier, is checked.
                seen_stamp="" if n < PLAYERS else f"{n - PLAYERS:016x}",
                stamp=f"{n:016x}",
                asked_by_socket=shape == "credit",
            )
            done = await apply(store, keys, change, NOW_MS + n, reply_key=keys.reply(f"i:{n}"))
            if not done.written:  # a refused commit would be measured as a cheap one
                raise RuntimeError(f"commit {n} refused: {done.status}")
            return done

        return commit
    if shape == "commands":

        async def commands(n: int) -> object:
            _, k, v = floor_args(n)
            state = ("ver", v[2], "vs", v[1], "signin", v[8])
            wallet = ("bal", v[3], "seq", v[2], "head", v[4], "bt", v[5])
            return await store.call_many(
                ("HMGET", k[0], *WALLET_READ),
                ("SET", k[4], v[7], "NX", "EX", 86_400),
                ("HSETNX", k[2], v[1], v[2]),
                ("HINCRBY", k[3], "mint:signin", -10),
                ("RPUSH", k[1], v[0]),
                ("PUBLISH", k[5], v[6]),
                ("HSET", k[0], *state, *wallet),
            )

        return commands
    sha = await store.call("SCRIPT", "LOAD", (LUA / f"{SCRIPTS[shape]}.lua").read_text())
    if shape == "one_hash_min":

        async def checked(n: int) -> object:
            k, v = one_hash_min_args(n)
            done = await store.call("EVALSHA", sha, len(k), *k, *v)
            if done[0] != b"ok":  # a refused call would be measured as a cheap one
                raise RuntimeError(f"call {n} refused: {done[0]!r}")
            return done

        return checked

    def args_of(n: int) -> tuple[list[str], list[bytes | str | int]]:
        if shape == "one_hash_floor":
            return one_hash_args(n)
        _, k, v = floor_args(n)
        return k, v

    async def script(n: int) -> object:
        k, v = args_of(n)
        return await store.call("EVALSHA", sha, len(k), *k, *v)

    return script


async def call_all(call: Call, commits: int, in_flight: int = CONCURRENCY) -> None:
    """Calls 0 .. commits - 1, `in_flight` at a time."""
    numbers = iter(range(commits))

    async def worker() -> None:
        for n in numbers:
            await call(n)

    await asyncio.gather(*(worker() for _ in range(in_flight)))


async def drive(url: str, shape: str, commits: int, in_flight: int = CONCURRENCY) -> None:
    store = Store(connect(url))
    try:
        await store.load_scripts()
        await call_all(await caller(store, shape), commits, in_flight)
    finally:
        await store.close()


def instructions(
    shape: str, commits: int, appendfsync: str, valgrind: str, in_flight: int = CONCURRENCY
) -> float:
    """Redis's instructions per call of the shape (callgrind; see the module's doc)."""
    short = commits // 4
    totals = []
    for count in (short, commits):
        with tempfile.TemporaryDirectory(prefix="commit-cost-") as tmp:
            out = Path(tmp) / "callgrind.out"
            callgrind = [valgrind, "-q", "--tool=callgrind", f"--callgrind-out-file={out}"]
            embedded = EmbeddedStore(
                Path(tmp) / "store",
                appendfsync=appendfsync,
                launcher=[*callgrind, "--dump-instr=no"],
            )
            embedded.start()
            try:
                asyncio.run(drive(embedded.url, shape, count, in_flight))
            finally:
                embedded.stop()
            found = TOTALS.search(out.read_bytes())
            if found is None:
                raise RuntimeError(f"no totals in {out}")
            totals.append(int(found.group(1)))
    return (totals[1] - totals[0]) / (commits - short)


async def measure(
    shape: str, commits: int, appendfsync: str, in_flight: int = CONCURRENCY
) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="commit-cost-"))
    embedded = EmbeddedStore(folder / "store", appendfsync=appendfsync)
    embedded.start()
    try:
        redis = connect(embedded.url)
        store = Store(connect(embedded.url))
        await store.load_scripts()
        call = await caller(store, shape)
        await redis.config_resetstat()
        cpu_before, cycles_before = await redis.info("cpu"), await redis.info("stats")
        started_s = time.perf_counter()
        await call_all(call, commits, in_flight)
        elapsed_s = time.perf_counter() - started_s
        cpu_after, cycles_after = await redis.info("cpu"), await redis.info("stats")
        stats = await redis.info("commandstats")
        await store.close()
        await redis.aclose()
    finally:
        embedded.stop()
    cpu_s = sum(cpu_after[k] - cpu_before[k] for k in ("used_cpu_sys", "used_cpu_user"))
    counted = {
        k: v for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config|resetstat")
    }
    calls = sum(v["calls"] for v in counted.values())
    # The INFO calls' own cycles are in it too (four, against thousands).
    cycles = cycles_after["eventloop_cycles"] - cycles_before["eventloop_cycles"]
    print(
        f"{shape:8s} appendfsync {appendfsync}: {commits / elapsed_s:.0f} calls/s, Redis CPU "
        f"{cpu_s / commits * 1e6:.1f} µs per call, {calls / commits:.2f} commands per call, "
        f"{commits / cycles:.1f} calls per store cycle ({in_flight} in flight)"
    )
    for name, stat in sorted(counted.items(), key=lambda kv: -kv[1]["usec"]):
        print(
            f"  {name.removeprefix('cmdstat_'):10s} {stat['calls'] / commits:5.2f} per call"
            f"  {stat['usec'] / commits:7.2f} µs per call"
        )
    return {
        "redis_cpu_us": cpu_s / commits * 1e6,
        "commands": calls / commits,
        "calls_per_cycle": commits / cycles,
        **{f"calls:{k.removeprefix('cmdstat_')}": v["calls"] / commits for k, v in counted.items()},
    }


async def run(
    commits: int, appendfsync: str, shapes: list[str], in_flight: int = CONCURRENCY
) -> dict[str, dict[str, float]]:
    figures = {shape: await measure(shape, commits, appendfsync, in_flight) for shape in shapes}
    cpu = {shape: f"{f['redis_cpu_us']:.1f} µs" for shape, f in figures.items()}
    print("Redis CPU per call: " + ", ".join(f"{shape} {us}" for shape, us in cpu.items()))
    return figures


def main(argv: list[str] | None = None) -> None:
    top = argparse.ArgumentParser(prog="python -m bench.commit_cost")
    top.add_argument("--commits", type=int, default=20_000)
    top.add_argument("--appendfsync", choices=("always", "everysec"), default="always")
    top.add_argument("--shapes", default=",".join(SHAPES), help=f"of {', '.join(SHAPES)}")
    top.add_argument(
        "--instructions", action="store_true", help="count Redis's instructions (callgrind)"
    )
    top.add_argument("--valgrind", default="valgrind")
    top.add_argument("--in-flight", type=int, default=CONCURRENCY, help="calls at a time")
    args = top.parse_args(argv)
    if not 1 <= args.commits <= COMMITS_MAX:
        top.error(f"--commits must be 1..{COMMITS_MAX}")
    if not 1 <= args.in_flight <= IN_FLIGHT_MAX:
        top.error(f"--in-flight must be 1..{IN_FLIGHT_MAX}")
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    if not shapes or set(shapes) - set(SHAPES):
        top.error(f"--shapes must name some of {', '.join(SHAPES)}")
    if args.commits < 4:
        top.error("--commits must be at least 4")
    if not args.instructions:
        asyncio.run(run(args.commits, args.appendfsync, shapes, args.in_flight))
        return
    for shape in shapes:
        per_call = instructions(
            shape, args.commits, args.appendfsync, args.valgrind, args.in_flight
        )
        print(
            f"{shape:8s} appendfsync {args.appendfsync}: "
            f"{per_call / 1000:.1f}k Redis instructions per call"
        )


if __name__ == "__main__":
    main()
