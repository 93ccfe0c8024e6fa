"""A player's journal a page at a time, newest first, aware of compaction.

Compaction (compaction.py) moves a journal's oldest entries to the archive files and keeps
a checkpoint in the wallet (`ck_seq`): entries 1..ck_seq are no longer in the Redis list,
whose index 0 is entry ck_seq + 1. The WebSocket `ledger` op and the admin player view
read pages through `journal_page`, so they agree, and neither points past the archive.
A format-2 entry does not hold its transfer id: the page reads the txids hash with it.
"""

from __future__ import annotations

from typing import Any

from server.ledger.ledger import Entry, ids_by_seq
from server.store.keys import PlayerKeys
from server.store.store import Store

READ_ATTEMPTS_MAX = 3  # compaction may trim between the wallet read and the page read


class JournalBusy(Exception):
    """The journal kept changing under the reads (compaction trimming it meanwhile)."""


async def journal_page(
    store: Store, keys: PlayerKeys, limit: int, before: int | None
) -> dict[str, Any]:
    """At most `limit` entries with `seq < before` (or the newest), newest first.

    `next_before_seq` is the `before` of the next (older) page, None when no older entry
    is left in the store; `archived_through_seq` is the newest archived seq (0: none).
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    for _ in range(READ_ATTEMPTS_MAX):
        seq_raw, ck_raw = await store.call("HMGET", keys.state, "seq", "ck_seq")
        seq, archived = int(seq_raw or 0), int(ck_raw or 0)
        top = seq if before is None else min(before - 1, seq)
        low = max(archived + 1, top - limit + 1)
        page: dict[str, Any] = {
            "entries": [],
            "next_before_seq": None,
            "archived_through_seq": archived,
        }
        if top < low:
            return page
        raw, txids = await store.call_many(
            ("LRANGE", keys.journal, low - archived - 1, top - archived - 1),
            ("HGETALL", keys.txids),
        )
        if not isinstance(txids, dict):  # a reply without redis-py's pairs-to-dict callback
            txids = dict(zip(txids[::2], txids[1::2], strict=True))
        ids = ids_by_seq(txids.items())
        entries = [Entry.decode(r, ids) for r in raw]
        if [e.seq for e in entries] != list(range(low, top + 1)):
            continue  # compaction trimmed the journal in between: read again
        page["entries"] = [e.public() for e in reversed(entries)]
        page["next_before_seq"] = low if low > archived + 1 else None
        return page
    raise JournalBusy(f"player {keys.player_id}: the journal kept changing; retry")
