"""The bench phases of issue 10, each run small end to end: they measure what they say.

Figures are not asserted (no timed tests): only that each phase ran its whole course and
counted what happened (entries, firings, pushes, sockets, credits, ledger verify), on one
store and on the three-primary cluster (`cluster_<phase>`: the same code, the other store).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import pstats
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
from redis import Redis
from redis.crc import key_slot
from websockets.asyncio.client import connect as connect_ws

from bench import (
    commit_cost,
    connect_wave,
    fanout,
    idle_sockets,
    journal_bytes,
    phases,
    probe,
    procs,
    serve,
    socket_memory,
    timer_claims,
    ws_signin,
)
from bench.slots import SLOTS, SlotMap, bucket_shares
from bench.stores import CLUSTER_STORE, ONE_STORE, StoreKind, started_store
from bench.verdict import line, signin_verdicts, verdict
from load import midnight
from server.auth import issue_token
from server.protocol import SUBPROTOCOL_MSGPACK
from server.store.cluster import EmbeddedCluster
from server.store.embedded import EmbeddedStore
from server.store.keys import BUCKETS, PlayerKeys, timers
from server.store.store import Store, connect
from tests.conftest import Listener

STORES = pytest.mark.parametrize("store", [ONE_STORE, CLUSTER_STORE], ids=["one", "cluster"])


def options(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    phases.add_options(parser)
    return parser.parse_args(list(argv))


def test_verdict_compares_and_a_missing_figure_is_not_met() -> None:
    assert verdict("ratio", 0.41, ">=", 0.4)["met"]
    assert not verdict("ratio", 0.39, ">=", 0.4)["met"]
    assert verdict("bytes", 64, "<=", 64, "B")["met"]
    assert not verdict("bytes", math.nan, "<=", 64, "B")["met"]
    assert line(verdict("bytes", 65, "<=", 64, "B")).endswith("NOT MET")


def test_signin_verdicts_take_the_ratios_over_echo_of_the_same_run_on_each_store() -> None:
    run = {
        "echo": {"round_trips_per_s": 1000.0},
        "signin_always": {
            "round_trips_per_s": 500.0,
            "server_cpu_us_per_credit": 80.0,
            "redis_cpu_us_per_credit": 20.0,
            "redis_commands_per_credit": 8.0,
        },
        "signin_steady": {"round_trips_per_s": 600.0},
        "cluster_always": {
            "round_trips_per_s": 300.0,
            "server_cpu_us_per_credit": 60.0,
            "redis_cpu_us_per_credit": 30.0,
            "redis_commands_per_credit": 9.0,
        },
        "cluster_steady": {"round_trips_per_s": 700.0},
    }
    got = {
        (v["figure"], v["store"]): (round(v["value"], 3), v["met"]) for v in signin_verdicts(run)
    }
    assert got == {
        ("credit path / echo (rt/s)", "one store"): (0.5, True),
        ("credit path Redis CPU per credited sign-in", "one store"): (20.0, True),
        ("credit path Redis commands per credited sign-in", "one store"): (8.0, True),
        ("credit path server CPU per credited sign-in", "one store"): (80.0, False),
        ("steady path / echo (rt/s)", "one store"): (0.6, False),
        ("credit path / echo (rt/s)", "3 shards"): (0.3, False),
        ("credit path Redis CPU per credited sign-in", "3 shards"): (30.0, False),
        ("credit path Redis commands per credited sign-in", "3 shards"): (9.0, False),
        ("credit path server CPU per credited sign-in", "3 shards"): (60.0, True),
        ("steady path / echo (rt/s)", "3 shards"): (0.7, True),
    }
    assert "3 shards" in line(verdict("x", 1.0, ">=", 0.5, "", CLUSTER_STORE))


def test_every_phase_has_a_cluster_twin_run_right_after_it() -> None:
    for name in phases.MODULES:
        assert phases.PHASES[name].store == ONE_STORE
        twin = phases.PHASES[f"cluster_{name}"]
        assert twin.module is phases.MODULES[name] and twin.store == CLUSTER_STORE
        order = ws_signin.PHASES
        assert order.index(f"cluster_{name}") == order.index(name) + 1


def test_a_failed_phase_still_has_its_target_not_met_on_its_store() -> None:
    # No player: nothing to measure, the phase fails (max of no journal) after its store.
    result = phases.run("journal_bytes", options("--jb-players", "0", "--jb-days", "1"))
    assert "failed" in result
    [failed] = result["verdicts"]
    assert failed["figure"] == journal_bytes.TARGET.figure and failed["store"] == "one store"
    assert math.isnan(failed["value"]) and not failed["met"]


def stores_named(result: dict[str, Any], store: StoreKind) -> None:
    """Every verdict of a phase names the store it ran on."""
    assert result["verdicts"]
    assert {v["store"] for v in result["verdicts"]} == {result["store"]}
    assert result["store"] == ("3 shards" if store.cluster else "one store")


@pytest.mark.slow
@STORES
def test_journal_bytes_counts_every_entry_and_compaction_keeps_the_books(store: StoreKind) -> None:
    result = journal_bytes.run(options("--jb-players", "3", "--jb-days", "100"), store)
    stores_named(result, store)
    assert result["entries"] == result["credited"] == 300
    assert result["verify_ok"] and result["verify_after_ok"]
    # 100 daily entries, 90 days of retention: the 10 oldest of each player are archived.
    assert result["compaction"]["entries"] == 30
    assert result["journal_entries_left_max"] == 90
    assert result["bytes_per_entry"] > 0 and result["bound_bytes_daily_player"] > 0
    assert result["txids_left"] == 300 and result["journal_entries_left"] == 270
    assert journal_bytes.archived_id_bytes(result) > 0
    assert [v["figure"] for v in result["verdicts"]] == [
        "journal: Redis bytes per entry (ledger keys)"
    ]


@pytest.mark.slow
@STORES
def test_timers_phase_fires_every_timer_once_and_leaves_none(store: StoreKind) -> None:
    result = timer_claims.run(options("--timers-count", "3000", "--timers-spread-s", "1"), store)
    stores_named(result, store)
    assert result["fired"] == 3000
    assert result["left_in_redis"] == 0
    assert result["redis_bytes_per_timer"] > 0 and result["ticks"] >= 1


@pytest.mark.slow
@STORES
def test_fanout_delivers_to_every_socket_of_the_app_and_of_the_relay(store: StoreKind) -> None:
    args = options("--fanout-sockets", "20", "--fanout-procs", "1", "--fanout-duration-s", "1")
    result = fanout.run(args, store)
    stores_named(result, store)
    for name in ("relay", "app"):
        assert result[name]["sockets"] == 20
        assert result[name]["failures"] == [] and result[name]["closed_by_server"] == 0
        assert result[name]["received_in_window"] > 0
    assert result["ratio"] > 0


@pytest.mark.slow
@STORES
def test_connect_wave_credits_each_fresh_player_once(store: StoreKind) -> None:
    args = options("--wave-players", "40", "--wave-concurrency", "8", "--wave-rounds", "3")
    result = connect_wave.run(args, store)
    stores_named(result, store)
    assert result["echo"]["done"] == 40 and result["echo"]["errors"] == 0
    # Three rounds of fresh players (14, 13, 13): had a round signed in a player of an
    # earlier one, that sign-in would not credit.
    assert result["sign_in"]["done"] == result["sign_in"]["credited"] == 40
    assert result["sign_in"]["errors"] == 0 and result["sign_in"]["rounds"] == 3
    assert len(result["round_ratios"]) == 3 and all(r > 0 for r in result["round_ratios"])
    assert result["ratio"] == sorted(result["round_ratios"])[1]
    # The cores the target needs at the sign-in wave's CPU per player, every process's.
    signin, echo = result["sign_in"], result["echo"]
    roles = signin["cpu_us_per_player"].values()
    assert signin["cpu_us_per_player_all"] == pytest.approx(
        sum(roles) + signin["client_cpu_us_per_player"]
    )
    assert len(signin["cpu_us_per_player"]) == (4 if store.cluster else 2)  # + each primary
    [target] = result["verdicts"]
    assert target["cores"]["needed"] == pytest.approx(
        0.7 * echo["players_per_s"] * signin["cpu_us_per_player_all"] * 1e-6
    )
    assert target["cores"]["used"] > 0 and target["cores"]["base_used"] > 0


@pytest.mark.slow
@STORES
def test_idle_sockets_stay_open_while_measured(store: StoreKind) -> None:
    args = options("--idle-sockets", "30", "--idle-procs", "1", "--idle-warmup", "5")
    result = idle_sockets.run(args, store)
    stores_named(result, store)
    for name in ("echo", "app"):
        assert result[name]["sockets"] == result[name]["alive_at_end"] == 30
        assert result[name]["open_errors"] == 0


@pytest.mark.slow
def test_socket_memory_splits_what_the_held_sockets_cost_by_package() -> None:
    groups = socket_memory.measure(sockets=40, warmup=5)
    assert sum(groups.values()) > 40 * 1000  # each socket holds kilobytes of the stack
    assert groups.get("uvicorn", 0) > 0 and groups.get("websockets", 0) > 0


@pytest.mark.slow
@pytest.mark.parametrize("store", ["one", "cluster"])
def test_midnight_credits_every_player_once_more_and_verifies(store: str) -> None:
    args = argparse.Namespace(players=40, servers=2, clients=1, spread_s=0.5, store=store)
    result = midnight.run(args)
    assert result["store"] == ("3 shards" if store == "cluster" else "one store")
    assert result["day_one_credited"] == 40
    assert result["credited"] == 40 and result["errors"] == 0
    assert result["verify_ok"], result["verify_output"]
    assert result["ok"]


def test_ratios_over_echo_only_for_the_round_trip_phases() -> None:
    run: dict[str, dict[str, Any]] = {
        "echo": {"round_trips_per_s": 1000.0},
        "signin_steady": {"round_trips_per_s": 500.0},
        "journal_bytes": {"entries": 10, "verdicts": []},
    }
    assert ws_signin.ratios_of(run) == {"signin_steady_over_echo": 0.5}


@pytest.mark.slow
def test_commit_cost_s_floor_runs_the_commands_commit_lua_runs() -> None:
    """The floor shapes are only a floor if they send what a credited commit sends."""
    figures = asyncio.run(commit_cost.run(3000, "everysec", list(commit_cost.SHAPES)))
    # Three credits per player: SADD (a first posting) and LTRIM (every 20 pushes) are not
    # what a credit costs in the steady state, and the floor leaves them out.
    inner = {
        k: round(v) for k, v in figures["commit"].items() if k.startswith("calls:") and v >= 0.5
    }
    del inner["calls:evalsha"]
    assert inner == {
        k: round(v) for k, v in figures["commands"].items() if k.startswith("calls:")
    }, "the floor lacks or adds a command that commit.lua runs for a credit"
    assert figures["floor"]["commands"] == 8 and figures["commands"]["commands"] == 7
    # The credit path's shape is the same commit from the player's only socket: no push.
    credit = {
        k: round(v) for k, v in figures["credit"].items() if k.startswith("calls:") and v >= 0.5
    }
    assert credit == {"calls:evalsha": 1} | {k: v for k, v in inner.items() if k != "calls:publish"}
    assert figures["noop"]["commands"] == 1


@pytest.mark.slow
def test_commit_cost_keeps_as_many_calls_in_flight_as_it_is_asked() -> None:
    """--in-flight sets how many calls a store cycle can be given, which sets what each
    call's share of the cycle's own cost (its fsync) is: never more calls a cycle."""
    few = asyncio.run(commit_cost.run(400, "everysec", ["credit"], in_flight=4))["credit"]
    assert 0 < few["calls_per_cycle"] <= 4


async def books_after(folder: Path, shape: str, calls: int) -> dict[str, Any]:
    """Player p0's journal, chain head and balance, and the bucket's mint account, after
    `calls` calls of a commit_cost shape on a fresh store."""
    embedded = EmbeddedStore(folder)
    embedded.start()
    try:
        store, redis = Store(connect(embedded.url)), connect(embedded.url)
        try:
            await store.load_scripts()
            keys = PlayerKeys("p0")
            async with Listener(redis, keys.push_channel) as listener:
                await commit_cost.call_all(await commit_cost.caller(store, shape), calls)
                pushes = [await listener.next() for _ in range(calls // commit_cost.PLAYERS)]
            return {
                "pushes": [p["data"] for p in pushes if p is not None],
                "journal": await redis.lrange(keys.journal, 0, -1),
                "head": await redis.hget(keys.state, "head"),
                "balance": await redis.hget(keys.state, "bal"),
                "mint": await redis.hget(keys.sys, "mint:signin"),
                "inbox": await redis.lrange(keys.inbox, 0, -1),
            }
        finally:
            await store.close()
            await redis.aclose()
    finally:
        embedded.stop()


@pytest.mark.slow
def test_commit_cost_s_one_hash_lower_bound_writes_what_commit_lua_writes(tmp_path: Path) -> None:
    """one_hash_min is a lower bound of a one-hash commit only if it does a commit's work:
    for the same credits, its journal entries, chain head, balance, system account and
    pushes are byte for byte commit.lua's."""
    calls = 3 * commit_cost.PLAYERS  # three credits each: a chain of three entries

    async def both() -> tuple[dict[str, Any], dict[str, Any]]:
        commit = await books_after(tmp_path / "commit", "commit", calls)
        return commit, await books_after(tmp_path / "one_hash", "one_hash_min", calls)

    commit, one_hash = asyncio.run(both())
    assert len(commit["journal"]) == 3 and len(commit["pushes"]) == 3
    assert commit["inbox"] == []  # the `balance` push is a state push
    assert one_hash == commit


@pytest.mark.slow
@STORES
def test_the_credit_floor_answers_in_the_reply_and_pushes_to_the_players_other_socket(
    tmp_path: Path, store: StoreKind
) -> None:
    """bench.instructions' `floor` path is a credit's I/O only if each request gets what a
    credit gets: its reply with the balance, and a `balance` push live through the fan-out
    to the player's other socket, not to its own."""
    port = procs.free_port()
    with (
        started_store(tmp_path / "store", store) as (redis_url, _),
        procs.bench_server("floor", port, ["--redis-url", redis_url]),
    ):
        got, other = asyncio.run(floor_frames(port, requests=3))
    # Only replies: a push to the requesting socket would come before the next reply.
    assert [r.get("id") for r in got] == [0, 1, 2] and all(r["ok"] for r in got)
    assert [(r["result"]["balance"], r["result"]["entry_seq"]) for r in got] == [
        (10, 1),
        (20, 2),
        (30, 3),
    ]
    assert [p["data"]["entry_seq"] for p in other] == [1, 2, 3] and other[0]["seq"] == 0


async def floor_frames(
    port: int, requests: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The frames the requesting socket got until its reply to `requests` requests and one
    more, less that last reply; and the pushes the player's other socket got."""
    token = issue_token(serve.JWT_SECRET, "floor-player", int(time.time()), 3600)
    frames: list[dict[str, Any]] = []
    options: dict[str, Any] = {
        "subprotocols": [SUBPROTOCOL_MSGPACK],
        "additional_headers": {"Authorization": f"Bearer {token}"},
    }
    url = f"ws://127.0.0.1:{port}/v1/ws"
    async with connect_ws(url, **options) as other, connect_ws(url, **options) as socket:
        await asyncio.sleep(0.2)  # the other socket's subscription is confirmed
        for rid in range(requests + 1):
            await socket.send(msgpack.packb({"id": rid, "op": "sign_in"}))
            while not any(f.get("id") == rid for f in frames):
                frames.append(msgpack.unpackb(await asyncio.wait_for(socket.recv(), 10)))
        pushes = [
            msgpack.unpackb(await asyncio.wait_for(other.recv(), 10)) for _ in range(requests)
        ]
    return frames[:-1], pushes


@pytest.mark.slow
def test_a_profiled_bench_server_writes_its_profile_into_a_new_folder(tmp_path: Path) -> None:
    """`--profile-dir` names a folder that need not exist yet (as `--keep` does)."""
    profile = tmp_path / "not-yet" / "echo.pstats"
    with procs.bench_server("echo", procs.free_port(), ["--profile", str(profile)]):
        pass
    assert pstats.Stats(str(profile)).total_calls > 0


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["signin_always", "cluster_always"])
def test_a_credits_commands_leave_out_the_polls_of_the_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, phase: str
) -> None:
    """The timers and the outbox relay read every bucket each pass, whatever the load: the
    credit path's commands per sign-in count what is left once the polls that ran inside
    the window are taken out (the figure with them is kept beside it), and so do each
    shard's, by the share of the buckets it holds."""
    monkeypatch.setattr(ws_signin, "RESULTS_DIR", tmp_path)
    argv = ["--phases", phase, "--connections", "4", "--warmup-s", "0.3"]
    assert ws_signin.main([*argv, "--duration-s", "2.5", "--rounds", "1"]) == 0
    [written] = tmp_path.glob("*.json")
    credit = json.loads(written.read_text())["phases"][phase]
    polls = credit["job_polls"]
    assert polls > 0 and polls % BUCKETS == 0  # whole passes: one read per bucket each
    by_command = credit["redis_calls"]
    assert by_command["zrange"] + by_command.get("lrange", 0) >= polls  # what the polls send
    calls = sum(credit["redis_calls"].values())
    assert credit["redis_commands_per_request_all"] == calls / credit["replies"]
    assert credit["redis_commands_per_request"] == (calls - polls) / credit["replies"]
    shards = credit["redis_nodes"]
    assert len(shards) == (3 if phase.startswith("cluster") else 1)
    assert all(s["commands_per_request"] < s["commands_per_request_all"] for s in shards)
    assert sum(s["commands_per_request"] for s in shards) == pytest.approx(
        credit["redis_commands_per_request"]
    )
    # The stores' event loops over the same window (Valkey counts them): each node's
    # cycles, the time inside them and, of it, running commands, and its main thread's
    # time on a core and waiting for one; summed for the phase.
    for shard in shards:
        assert shard["loop_cycles_per_s"] > 0
        assert 0 < shard["loop_commands_fraction"] < shard["loop_busy_fraction"]
        # The main thread's own, in ns, against the process's in clock ticks (10 ms).
        assert 0 < shard["thread_on_core_fraction"] <= shard["cpu_cores"] + 0.02
        assert shard["thread_waiting_fraction"] >= 0
    assert credit["server_waiting_fraction"] >= 0 and credit["client_waiting_fraction"] >= 0
    assert credit["thread_on_core_fraction"] == pytest.approx(
        sum(s["thread_on_core_fraction"] for s in shards)
    )
    cycles = sum(s["loop_cycles_per_s"] for s in shards)
    assert credit["loop_cycles_per_s"] == pytest.approx(cycles)
    assert credit["loop_credits_per_cycle"] == pytest.approx(
        credit["credited"] / (cycles * credit["window_s"])
    )
    assert credit["loop_commands_us_per_credit"] > 0
    # Every watched process's CPU (the servers', the stores', the client's) per credit.
    assert credit["cpu_us_per_credit"] == pytest.approx(
        credit["server_cpu_us_per_credit"]
        + credit["redis_cpu_us_per_credit"]
        + credit["client_cpu_us_per_credit"]
    )


def test_each_node_gets_the_share_of_the_polls_its_buckets_make() -> None:
    nodes = ("redis://a:1/0", "redis://b:2/0")
    half = SLOTS // 2
    shares = bucket_shares(SlotMap(nodes, (0,) * half + (1,) * (SLOTS - half), cluster=True))
    on_first = sum(key_slot(timers(b).encode()) < half for b in range(BUCKETS))
    assert shares == {nodes[0]: on_first / BUCKETS, nodes[1]: 1 - on_first / BUCKETS}
    assert 0 < on_first < BUCKETS  # both nodes hold some: the split is by each key's slot
    assert bucket_shares(SlotMap(nodes[:1], (0,) * SLOTS, cluster=False)) == {nodes[0]: 1.0}


def loadgen_report(credited: int, calls: dict[str, int], client_cpu_s: float) -> dict[str, Any]:
    """bench/loadgen.py's report of 1 000 sign-ins over 2 s: server pid 11 (0.05 s of
    CPU), client 12, one store node, pid 21 (0.04 s)."""
    return {
        "replies": 1000,
        "credited": credited,
        "window_s": 2.0,
        "cpu_s_by_pid": {"11": 0.05, "12": client_cpu_s, "21": 0.04},
        "client_pid": 12,
        "replies_by_url": {"ws://one": 1000},
        "pushes": 0,
        "redis_calls_by_node": {"redis://n/0": calls},
        "redis_calls": calls,
        "job_polls": 0,
    }


def test_the_credit_paths_targets_are_over_the_credited_sign_ins_only() -> None:
    """The targets are per credited sign-in: a sign-in that credits nothing (the player's
    second of a time-lapse day) is cheaper, and dividing by every sign-in would let it pull
    a figure under its target. Its cost is charged to the credits instead: an upper bound."""
    report = loadgen_report(990, {"evalsha": 1000, "hset": 6960}, client_cpu_s=0.01)
    one_node = {"redis://n/0": 1.0}
    summary = ws_signin.summarize(report, [11], [("redis://n/0", 21)], one_node)
    assert summary["redis_commands_per_request"] == pytest.approx(7.96)  # under 8 ...
    assert summary["redis_commands_per_credit"] == pytest.approx(7960 / 990)  # ... not met
    assert summary["server_cpu_us_per_credit"] == pytest.approx(0.05e6 / 990)
    assert summary["redis_cpu_us_per_credit"] == pytest.approx(0.04e6 / 990)
    got = {v["figure"]: v for v in signin_verdicts({"signin_always": summary})}
    commands = got["credit path Redis commands per credited sign-in"]
    assert commands["value"] == pytest.approx(7960 / 990) and not commands["met"]
    assert got["credit path server CPU per credited sign-in"]["value"] == pytest.approx(
        0.05e6 / 990
    )
    # No credit at all: no figure (not met), not a division by zero.
    nothing = ws_signin.summarize({**report, "credited": 0}, [11], [("redis://n/0", 21)], one_node)
    assert math.isnan(nothing["redis_commands_per_credit"])


def test_a_ratios_verdict_says_the_cores_its_target_needs_at_the_paths_cpu() -> None:
    """Where a ratio's target cannot be met on two cores, the run shows it: at the CPU a
    credit cost every process, reaching 0.4 of the echo run before it needs this many
    cores busy, beside what the path and its echo kept busy (each run over its own echo
    run, the median over the rounds)."""

    def nodes(*busy: float) -> list[dict[str, float]]:
        return [{"loop_busy_fraction": share} for share in busy]

    runs = [
        {"round_trips_per_s": 400.0, "echo_round_trips_per_s": 1000.0,
         "cpu_us_per_credit": 2500.0, "cores_used": 1.0, "redis_nodes": nodes(0.5, 0.8)},
        {"round_trips_per_s": 300.0, "echo_round_trips_per_s": 1200.0,
         "cpu_us_per_credit": 3000.0, "cores_used": 0.9, "redis_nodes": nodes(0.6)},
        {"round_trips_per_s": 350.0, "echo_round_trips_per_s": 1000.0,
         "cpu_us_per_credit": 4000.0, "cores_used": 1.4, "redis_nodes": nodes(0.7, 0.2)},
    ]  # fmt: skip
    echo = {"round_trips_per_s": 1000.0, "cores_used": 1.9}
    got = signin_verdicts({"echo": echo, "signin_always": {**runs[0], "rounds": runs}})
    [ratio] = [v for v in got if v["figure"] == "credit path / echo (rt/s)"]
    # 0.4 × 1000 × 2500 µs = 1.0; 0.4 × 1200 × 3000 µs = 1.44; 0.4 × 1000 × 4000 µs = 1.6
    assert ratio["cores"]["needed"] == pytest.approx(1.44)
    assert ratio["cores"]["used"] == 1.0 and ratio["cores"]["base_used"] == 1.9
    assert "needs 1.44 of the" in line(ratio) and "kept 1.00 busy, its baseline 1.90" in line(ratio)
    # The serial point: the busiest primary's thread, never idle, at the run's cost in its
    # cycles a request: 400 / 0.8 / 1000 = 0.5; 300 / 0.6 / 1200 = 0.417; 350 / 0.7 / 1000.
    assert ratio["cores"]["store_bound"] == pytest.approx(0.5)
    assert ratio["cores"]["store_busy"] == pytest.approx(0.7)
    assert "in its cycles 70% of the window: never idle, it would carry 0.500" in line(ratio)
    # A store that keeps no loop counters (Redis 7.0): no bound, the cores still.
    for run in runs:
        run["redis_nodes"] = [{}]
    got = signin_verdicts({"echo": echo, "signin_always": {**runs[0], "rounds": runs}})
    assert "store_bound" not in got[0]["cores"] and "needed" in got[0]["cores"]
    # A path without the figure (an older result) keeps its plain verdict.
    bare = signin_verdicts({"echo": echo, "signin_always": {"round_trips_per_s": 400.0}})
    assert "cores" not in bare[0]


def test_redis_cpu_per_credit_says_what_of_it_ran_commands() -> None:
    """The store's event loop splits Redis's CPU per credit: what ran commands, the rest
    being its cycles' own (the AOF's write and fsync, the socket reads and writes); an
    engine without the counters (Redis 7.0) leaves the verdict plain."""
    report = {
        **loadgen_report(1000, {"evalsha": 1000}, client_cpu_s=0.02),
        "redis_loop_by_node": {
            "redis://n/0": {"cycles": 50, "busy_us": 1_200_000, "commands_us": 21_000}
        },
        # The main threads' seconds on a core and waiting for one: server, client, store.
        "thread_s_by_pid": {"11": [0.05, 0.2], "12": [0.02, 0.1], "21": [0.036, 0.5]},
    }
    one_node = {"redis://n/0": 1.0}
    summary = ws_signin.summarize(report, [11], [("redis://n/0", 21)], one_node)
    assert summary["loop_cycles_per_s"] == 25.0 and summary["loop_credits_per_cycle"] == 20.0
    assert summary["loop_busy_fraction"] == 0.6 and summary["loop_commands_fraction"] == 0.0105
    assert summary["loop_commands_us_per_credit"] == 21.0
    assert summary["cpu_us_per_credit"] == pytest.approx(110.0)  # 50 + 40 + 20
    assert summary["cores_used"] == pytest.approx(0.055)
    assert summary["server_waiting_fraction"] == 0.1
    assert summary["client_waiting_fraction"] == 0.05
    text = ws_signin.loop_text(summary)
    assert "in its cycles 60% of the window" in text
    assert "its thread on a core 2%, waiting for one 25%: 58% in its cycles off any" in text
    [redis_cpu] = [
        v for v in signin_verdicts({"signin_always": summary}) if "Redis CPU" in v["figure"]
    ]
    assert redis_cpu["value"] == 40.0 and "running commands 21.0 µs" in redis_cpu["detail"]
    plain = {**report, "redis_loop_by_node": {"redis://n/0": {}}}
    summary = ws_signin.summarize(plain, [11], [("redis://n/0", 21)], one_node)
    assert "loop_cycles_per_s" not in summary
    assert all("detail" not in v for v in signin_verdicts({"signin_always": summary}))


def test_the_loops_of_several_primaries_read_as_each_ones_average_share() -> None:
    """Summed over three primaries the fractions pass 100% of the window (run AF printed
    "in its cycles 164% of the window"); the line says each primary's average share."""
    summed = {
        "loop_cycles_per_s": 1060.0,
        "loop_credits_per_cycle": 12.3,
        "loop_busy_fraction": 1.64,
        "loop_commands_fraction": 0.41,
        "loop_commands_us_per_credit": 31.6,
        "thread_on_core_fraction": 0.56,
        "thread_waiting_fraction": 1.04,
    }
    text = ws_signin.loop_text(summed, primaries=3)
    assert "3 primaries, 1060 cycles/s" in text
    assert "each in its cycles 55% of the window on average (running commands 14%" in text
    assert "its thread on a core 19%, waiting for one 35%: 36% in its cycles off any core" in text
    assert "164%" not in text
    one = ws_signin.loop_text(summed | {"loop_busy_fraction": 0.86}, primaries=1)
    assert one.startswith("1060 cycles/s") and "in its cycles 86% of the window (" in one


def test_the_stores_loop_counters_grow_with_its_cycles_where_the_engine_keeps_them(
    redis_server: EmbeddedStore | EmbeddedCluster,
) -> None:
    """Valkey and Redis >= 7.2 count their event loop's cycles and time; Redis 7.0 does
    not, and the bench then prints no loop figures rather than wrong ones."""
    nodes = getattr(redis_server, "primaries", [redis_server])
    url = nodes[0].url
    client = Redis.from_url(url)
    try:
        info = client.info("server")
        before = probe.loop_counters(url)
        for _ in range(20):
            client.ping()
        after = probe.loop_counters(url)
    finally:
        client.close()
    version = tuple(int(part) for part in info["redis_version"].split(".")[:2])
    if info.get("server_name") == "valkey" or version >= (7, 2):
        delta = probe.loop_delta(before, after)
        assert delta["cycles"] >= 20  # a ping a cycle: each waits for its reply
        assert delta["busy_us"] >= delta["commands_us"] > 0
    else:
        assert before == after == {} and probe.loop_delta(before, after) == {}


@pytest.mark.slow
def test_each_phase_records_the_vm_speed_before_and_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ws_signin, "RESULTS_DIR", tmp_path)
    argv = ["--phases", "echo", "--connections", "2", "--warmup-s", "0.2", "--duration-s", "0.5"]
    assert ws_signin.main([*argv, "--rounds", "2"]) == 0
    [written] = tmp_path.glob("*.json")
    echo = json.loads(written.read_text())["phases"]["echo"]
    assert len(echo["rounds"]) == 2  # each round its own run, each with its brackets
    for run in echo["rounds"]:
        before_ms, after_ms = run["calibration_ms"]
        assert 0 < before_ms < 10_000 and 0 < after_ms < 10_000


def test_signin_verdicts_in_rounds_take_the_median_of_each_rounds_ratio() -> None:
    def rounds(*rates: float, server_us: tuple[float, ...] = ()) -> dict[str, Any]:
        runs = [{"round_trips_per_s": rate} for rate in rates]
        for run, us in zip(runs, server_us, strict=False):
            run["server_cpu_us_per_credit"] = us
        return {**runs[0], "rounds": runs}

    run = {
        "echo": rounds(1000.0, 2000.0, 1000.0),
        # Per round 0.5, 0.3, 0.3: the median 0.3, where the medians' ratio would be 0.5.
        "signin_always": rounds(500.0, 600.0, 300.0, server_us=(80.0, 60.0, 100.0)),
    }
    got = {v["figure"]: v["value"] for v in signin_verdicts(run)}
    assert got["credit path / echo (rt/s)"] == pytest.approx(0.3)
    assert got["credit path server CPU per credited sign-in"] == 80.0
    assert ws_signin.ratios_of(run) == {"signin_always_over_echo": pytest.approx(0.3)}


def test_each_path_a_target_compares_with_echo_runs_right_after_an_echo() -> None:
    order = ws_signin.round_order(["echo", *ws_signin.SIGNIN_PHASES])
    for path in ws_signin.ECHO_PAIRED:
        assert order[order.index(path) - 1] == "echo"
    assert order.count("signin_everysec") == 1 and order[0] == "echo"


def test_a_ratio_over_echo_takes_each_run_over_the_echo_run_just_before_it() -> None:
    """The echo phase's own rounds (here one round as fast as the others are slow) do not
    enter a paired path's ratio: per run 0.5, 0.25, 0.25."""
    echo = {"round_trips_per_s": 1000.0, "rounds": [{"round_trips_per_s": r} for r in (1e3, 4e3)]}
    runs = [
        {"round_trips_per_s": 500.0, "echo_round_trips_per_s": 1000.0},
        {"round_trips_per_s": 500.0, "echo_round_trips_per_s": 2000.0},
        {"round_trips_per_s": 250.0, "echo_round_trips_per_s": 1000.0},
    ]
    run = {"echo": echo, "signin_steady": {**runs[0], "rounds": runs}}
    got = {v["figure"]: v["value"] for v in signin_verdicts(run)}
    assert got["steady path / echo (rt/s)"] == pytest.approx(0.25)
    assert ws_signin.ratios_of(run) == {"signin_steady_over_echo": pytest.approx(0.25)}
