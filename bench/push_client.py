"""Client process of the fan-out phase: holds sockets and publishes their pushes.

`python -m bench.push_client --url ... --redis-url ... --first F --count N` opens N
sockets (bench/hold_client.py), prints `{"ready": ...}`, waits for `go`, then publishes in
rounds: one frame per socket on its player's push channel as commit.lua publishes it
(PUBLISH, or SPUBLISH on the primary that owns the channel's slot when `--redis-url` is a
redis+cluster:// URL; pipelined on one raw connection per node; msgpack {push, seq, data}), at
most `window` rounds in flight (a round is done when every socket got its frame). After
`warmup_s`, frames received during `duration_s` are counted, with their latency from the
publisher's clock reading (taken just before the round is packed) to the receipt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

import hiredis
import msgpack
from websockets.asyncio.client import ClientConnection

from bench import probe
from bench.clients import raise_fd_limit, wait_for_line
from bench.hold_client import open_all
from bench.loadgen import percentile_ms
from bench.slots import read_slot_map
from server.store.keys import PlayerKeys
from server.store.link import pack_command

ROUNDS_MAX = 1_000_000
ROUND_WAIT_S_MAX = 30.0  # a round not delivered by then: the run ends, reported


class Tally:
    def __init__(self, sockets: int) -> None:
        self.sockets = sockets
        self.counting = False
        self.received = 0
        self.latencies_ns: list[int] = []
        self.by_round: dict[int, int] = {}
        self.done: dict[int, asyncio.Event] = {}

    def got(self, frame: bytes) -> None:
        push = msgpack.unpackb(frame)
        latency_ns = time.time_ns() - push["data"]["t"]
        if self.counting:
            self.received += 1
            self.latencies_ns.append(latency_ns)
        seq = push["seq"]
        self.by_round[seq] = self.by_round.get(seq, 0) + 1
        if self.by_round[seq] == self.sockets:
            del self.by_round[seq]
            self.done.pop(seq, asyncio.Event()).set()


async def receive(socket: ClientConnection, tally: Tally) -> None:
    while True:
        tally.got(await socket.recv())  # type: ignore[arg-type]


async def open_node(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("redis://").split("/")[0].split(":")
    return await asyncio.open_connection(host, int(port))


async def publish_rounds(
    args: argparse.Namespace, channels: list[bytes], tally: Tally, stop_at_s: float
) -> int:
    """Rounds until `stop_at_s`; returns the rounds published. Each channel is published
    on the node that owns its slot (bench/slots.py; all on the one node of a single
    store), one raw pipelined connection per node."""
    slots = read_slot_map(args.redis_url)
    groups = {node: group for node, group in slots.by_node(channels).items() if group}
    links = {node: await open_node(node) for node in groups}
    replies = {node: hiredis.Reader() for node in groups}
    in_flight: list[asyncio.Event] = []
    published = 0
    try:
        for seq in range(1, ROUNDS_MAX + 1):
            if time.monotonic() >= stop_at_s:
                break
            if len(in_flight) >= args.window:
                await asyncio.wait_for(in_flight.pop(0).wait(), ROUND_WAIT_S_MAX)
            tally.done[seq] = event = asyncio.Event()
            in_flight.append(event)
            frame = msgpack.packb({"push": "bench", "seq": seq, "data": {"t": time.time_ns()}})
            for node, group in groups.items():
                packed = (pack_command((slots.publish, c, frame)) for c in group)
                links[node][1].write(b"".join(packed))
            published += 1
            # Read the round's replies so they never pile up in our socket buffers.
            for node, group in groups.items():
                got = 0
                while got < len(group):
                    replies[node].feed(await links[node][0].read(1 << 16))
                    while replies[node].gets() is not False:
                        got += 1
        for event in in_flight:
            await asyncio.wait_for(event.wait(), ROUND_WAIT_S_MAX)
    finally:
        for _, writer in links.values():
            writer.close()
    return published


async def run(args: argparse.Namespace) -> dict[str, Any]:
    players = [f"{args.player_prefix}{i:06d}" for i in range(args.first, args.first + args.count)]
    sockets, errors = await open_all(args.url, players, args.concurrency)
    print(json.dumps({"ready": len(sockets), "errors": len(errors)}), flush=True)
    if await asyncio.get_running_loop().run_in_executor(None, wait_for_line, sys.stdin) != "go":
        return {}
    tally = Tally(len(sockets))
    receivers = [asyncio.create_task(receive(s, tally)) for s in sockets]
    channels = [PlayerKeys(p).push_channel.encode() for p in players]
    started_s = time.monotonic()
    open_at_s = started_s + args.warmup_s
    stop_at_s = open_at_s + args.duration_s
    publisher = asyncio.create_task(publish_rounds(args, channels, tally, stop_at_s))
    await asyncio.sleep(open_at_s - time.monotonic())
    cpu_before_s = probe.cpu_s(os.getpid())
    tally.counting, opened_s = True, time.monotonic()
    await asyncio.sleep(stop_at_s - time.monotonic())
    tally.counting, closed_s = False, time.monotonic()
    cpu_s = probe.cpu_s(os.getpid()) - cpu_before_s
    failure = ""
    try:
        rounds = await publisher
    except Exception as exc:  # noqa: BLE001 - reported: a stuck round ends the run
        rounds, failure = 0, repr(exc)
    for task in receivers:
        task.cancel()
    await asyncio.gather(*receivers, return_exceptions=True)
    closed = sum(s.close_code is not None for s in sockets)
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    latencies_ns = sorted(tally.latencies_ns)
    return {
        "sockets": len(sockets),
        "open_errors": len(errors),
        "closed_by_server": closed,
        "rounds": rounds,
        "failure": failure,
        "window_s": closed_s - opened_s,
        "received": tally.received,
        "client_cpu_s": cpu_s,
        "latency_ms_p50": percentile_ms(latencies_ns, 0.50),
        "latency_ms_p99": percentile_ms(latencies_ns, 0.99),
        "latencies_ms_sample": [
            n / 1e6 for n in latencies_ns[:: max(1, len(latencies_ns) // 2000)]
        ],
    }


def main(argv: list[str] | None = None) -> None:
    top = argparse.ArgumentParser(prog="python -m bench.push_client")
    top.add_argument("--url", required=True)
    top.add_argument("--redis-url", required=True)
    top.add_argument("--first", type=int, default=0)
    top.add_argument("--count", type=int, required=True)
    top.add_argument("--concurrency", type=int, default=200, help="handshakes at a time")
    top.add_argument("--window", type=int, default=4, help="rounds in flight")
    top.add_argument("--warmup-s", type=float, default=1.0)
    top.add_argument("--duration-s", type=float, default=5.0)
    top.add_argument("--player-prefix", default="fan-")
    args = top.parse_args(argv)
    raise_fd_limit(args.count)
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
