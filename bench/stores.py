"""The store a bench phase runs on: one embedded server or a local cluster, stopped after."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from server.store.cluster import EmbeddedCluster
from server.store.embedded import EmbeddedStore

CLUSTER_SHARDS = 3
# The stores' allocator (MANOR_STORE_MALLOC's choices); `bench.ws_signin --store-malloc`
# sets it for a run, so libc's malloc and jemalloc compare in one sitting.
MALLOC = ["auto"]


class StoreShape(Protocol):
    @property
    def appendfsync(self) -> str: ...

    @property
    def cluster(self) -> bool: ...


@dataclass(frozen=True)
class StoreKind:
    """The store of an issue-10 phase: one embedded server, or the cluster of
    CLUSTER_SHARDS primaries (no replicas); appendfsync always (the default) on each."""

    appendfsync: str = "always"
    cluster: bool = False


ONE_STORE = StoreKind()
CLUSTER_STORE = StoreKind(cluster=True)


def label(phase: StoreShape) -> str:
    """How a verdict line names the store."""
    return f"{CLUSTER_SHARDS} shards" if phase.cluster else "one store"


@contextlib.contextmanager
def started_store(folder: Path, phase: StoreShape) -> Iterator[tuple[str, list[tuple[str, int]]]]:
    """The app's Redis URL and (url, pid) of each primary; stopped on the way out."""
    if phase.cluster:
        cluster = EmbeddedCluster(
            folder, shards=CLUSTER_SHARDS, appendfsync=phase.appendfsync, malloc=MALLOC[0]
        )
        try:
            url = cluster.start()
            nodes = []
            for node in cluster.primaries:
                assert node.process is not None
                nodes.append((node.url, node.process.pid))
            yield url, nodes
        finally:
            cluster.stop()
        return
    store = EmbeddedStore(folder, appendfsync=phase.appendfsync, malloc=MALLOC[0])
    try:
        url = store.start()
        assert store.process is not None
        yield url, [(url, store.process.pid)]
    finally:
        store.stop()
