"""Key names. Every key of one player carries the player's bucket tag `{b<N>}`.

The bucket's system accounts (mint per source, sinks) share that tag, so each ledger
posting is double-entry inside one hash slot on Redis Cluster, with no global hot key.
BUCKETS never changes once data exists: it is part of every key.
"""

from __future__ import annotations

import zlib

BUCKETS = 1024
PREFIX = "m"
PLAYER_ID_BYTES_MAX = 64


def bucket_of(player_id: str) -> int:
    return zlib.crc32(player_id.encode()) % BUCKETS


def tag(bucket: int) -> str:
    return f"{{b{bucket}}}"


class PlayerKeys:
    """All keys of one player (same slot)."""

    __slots__ = (
        "bucket",
        "inbox",
        "journal",
        "player_id",
        "push_channel",
        "state",
        "sys",
        "txids",
        "wallet",
    )

    def __init__(self, player_id: str) -> None:
        self.player_id = player_id
        self.bucket = bucket_of(player_id)
        t = tag(self.bucket)
        base = f"{PREFIX}:{t}:{player_id}"
        self.state = f"{base}:state"  # hash: ver, rule components as msgpack
        self.wallet = f"{base}:wallet"  # hash: bal, seq, head, b:<YYYYMMDD> per batch
        self.journal = f"{base}:journal"  # list of msgpack entries, oldest first
        self.txids = f"{base}:txids"  # hash: transfer id -> "seq:digest"
        self.inbox = f"{base}:inbox"  # list of pushes, newest last, capped
        self.push_channel = f"{base}:push"
        self.sys = sys_accounts(self.bucket)

    def reply(self, request_id: str) -> str:
        return f"{PREFIX}:{tag(self.bucket)}:{self.player_id}:reply:{request_id}"


def sys_accounts(bucket: int) -> str:
    """Hash of the bucket's system account balances (field = account name)."""
    return f"{PREFIX}:{tag(bucket)}:sys"


def buckets_index() -> str:
    """Set of player ids per bucket is kept in `players_index(bucket)`; this is a debugging aid."""
    return f"{PREFIX}:buckets"


def players_index(bucket: int) -> str:
    """Set of player ids that have a wallet in this bucket: `ledger verify` walks it."""
    return f"{PREFIX}:{tag(bucket)}:players"
