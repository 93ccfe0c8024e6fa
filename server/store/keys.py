"""Key names. Every key of one player carries the player's bucket tag `{b<N>}`.

The bucket's system accounts (mint per source, sinks) share that tag, so each ledger
posting is double-entry inside one hash slot on Redis Cluster, with no global hot key.
BUCKETS never changes once data exists: it is part of every key.
"""

from __future__ import annotations

import zlib

BUCKETS = 1024
PREFIX = "m"
# Push triggers go to TRIGGER_PARTITIONS streams, read by the push gateway (or `manor
# push-relay`) with one consumer group on each. A player's triggers all go to the partition
# of its bucket range (bucket * P // BUCKETS), so they keep their order; each partition has
# a hash tag of its own, so the partitions spread over a cluster's primaries instead of
# making one hot slot. Choosing P (docs/push-relay.md): a power of two up to BUCKETS, at
# least a few per primary; every relay holds one blocked read per partition. It may grow
# (the relay reads partitions 0..P-1 by name), never shrink while entries wait.
TRIGGER_PARTITIONS = 16
TRIGGER_STREAM_LEN_MAX = 100_000  # per partition: XADD <stream> MAXLEN ~ <this> * ...
# The single stream of earlier versions: no longer written; the relay drains it if it exists.
LEGACY_TRIGGER_STREAM = "m:{notify}:triggers"


def trigger_partition(player_id: str) -> int:
    return bucket_of(player_id) * TRIGGER_PARTITIONS // BUCKETS


def trigger_stream(partition: int) -> str:
    return f"{PREFIX}:{{notify:{partition}}}:triggers"


def trigger_streams() -> list[str]:
    """Every partition's stream, partition 0 first."""
    return [trigger_stream(p) for p in range(TRIGGER_PARTITIONS)]


def trigger_stream_of(player_id: str) -> str:
    return trigger_stream(trigger_partition(player_id))


def bucket_of(player_id: str) -> int:
    return zlib.crc32(player_id.encode()) % BUCKETS


def tag(bucket: int) -> str:
    return f"{{b{bucket}}}"


class PlayerKeys:
    """All keys of one player (same slot)."""

    __slots__ = (
        "bucket",
        "friend_counts",
        "friends",
        "holds",
        "inbox",
        "journal",
        "outbox",
        "player_id",
        "players",
        "push_channel",
        "records",
        "replies",
        "sockets",
        "state",
        "stats",
        "sys",
        "timers",
        "txids",
    )

    def __init__(self, player_id: str) -> None:
        self.player_id = player_id
        self.bucket = bucket_of(player_id)
        t = tag(self.bucket)
        base = f"{PREFIX}:{t}:{player_id}"
        # hash: the rule's ver, pseq, vs and components (msgpack), and the wallet's bal, seq,
        # head, held, debt, bt (the batches), hx (the hold index), ck_* (layout.py)
        self.state = f"{base}:state"
        self.journal = f"{base}:journal"  # list of msgpack entries, oldest first
        self.txids = f"{base}:txids"  # hash: transfer id -> "<kind>|<coins>|<account>|<seq>"
        self.inbox = f"{base}:inbox"  # list of pushes, newest last, capped
        self.friends = f"{base}:friends"  # hash: friend id -> msgpack edge
        self.friend_counts = f"{base}:friend_counts"  # hash: rel, blk (friend_edge.lua)
        self.holds = f"{base}:holds"  # hash: checkout order id -> hold state (commit.lua)
        self.records = f"{base}:records"  # hash: platform records, e.g. order:<id> (msgpack)
        self.push_channel = f"{base}:push"
        self.replies = f"{base}:rep:"  # + a request id: its stored reply (reply())
        # sorted set: socket id -> lease expiry ms, across processes (socket_lease.lua)
        self.sockets = f"{base}:sockets"
        self.sys = sys_accounts(self.bucket)
        self.players = players_index(self.bucket)  # the bucket's players with a wallet
        self.outbox = outbox(self.bucket)
        self.stats = stats(self.bucket)
        self.timers = timers(self.bucket)

    def reply(self, request_id: str) -> str:
        # `rep`, not the former `reply` (a hash): a string now, so old keys are left alone
        return self.replies + request_id

    def friend_push(self, status: str, from_id: str) -> str:
        """String with a TTL: a `friend_request` push from `from_id` went out lately."""
        return f"{PREFIX}:{tag(self.bucket)}:{self.player_id}:fpush:{status}:{from_id}"

    def deferred_trigger(self, kind: str, collapse_key: str) -> str:
        """String with a TTL: the JSON data of a trigger that quiet hours deferred."""
        return f"{PREFIX}:{tag(self.bucket)}:{self.player_id}:deferred:{kind}:{collapse_key}"


def sys_accounts(bucket: int) -> str:
    """Hash of the bucket's system account balances (field = account name)."""
    return f"{PREFIX}:{tag(bucket)}:sys"


def outbox(bucket: int) -> str:
    """List of credit orders for players in other slots (steal, water): see outbox.py."""
    return f"{PREFIX}:{tag(bucket)}:outbox"


def stats(bucket: int) -> str:
    """Hash of counters that invariants are checked against (not accounts: they sum to nothing)."""
    return f"{PREFIX}:{tag(bucket)}:stats"


def timers(bucket: int) -> str:
    """Sorted set of timers due in this bucket, scored by due time in ms: see timers.py."""
    return f"{PREFIX}:{tag(bucket)}:timers"


def growth_players(bucket: int) -> str:
    """Set of player ids of this bucket that have growth events: the recompute job walks it.
    Added to before the commit that writes a player's first growth (an extra member whose
    commit failed is harmless: the job finds no growth and skips it)."""
    return f"{PREFIX}:{tag(bucket)}:growth"


def players_index(bucket: int) -> str:
    """Set of player ids that have a wallet in this bucket: `ledger verify` walks it."""
    return f"{PREFIX}:{tag(bucket)}:players"
