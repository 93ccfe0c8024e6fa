"""What the txids hash says of a transfer id: its kind, coins, account and entry seq.

A format-1 value says it all (`<kind>|<coins>|<account>|<seq>`, and what compaction leaves
of an archived id); a format-2 value is the entry's seq only, and the entry says the rest
(server/ledger/ledger.py). `read_posting` reads that entry when it has to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from server.ledger import accounts
from server.ledger.ledger import Entry
from server.store.keys import PlayerKeys
from server.store.store import Store


@dataclass(frozen=True, slots=True)
class Posting:
    kind: str  # "c" or "d"; "" until the entry is read (format 2)
    coins: int
    account: str
    seq: int

    @classmethod
    def parse(cls, raw: bytes) -> Posting:
        text = raw.decode()
        if text.isdigit():
            return cls("", 0, "", int(text))
        kind, coins, *account, seq = text.split("|")
        name = "|".join(account)
        if name.isdigit():  # an archived format-2 entry's account, by its code
            name = accounts.name_of(int(name))
        return cls(kind, int(coins), name, int(seq))

    @classmethod
    def of(cls, entry: Entry) -> Posting:
        return cls("c" if entry.amount > 0 else "d", abs(entry.amount), entry.account, entry.seq)

    @property
    def complete(self) -> bool:
        return bool(self.kind)

    def archived_value(self) -> str:
        """The format-1 value, the account by its code where it has one (what `parse` reads
        back): what compaction leaves of an archived entry's id."""
        code = accounts.code_of(self.account)
        account = self.account if code is None else str(code)
        return f"{self.kind}|{self.coins}|{account}|{self.seq}"


async def journal_entry(
    store: Store, keys: PlayerKeys, transfer_id: str, seq: int, ck_seq: int
) -> Entry | None:
    """Entry `seq` of the live journal (`ck_seq` the wallet's checkpoint as just read), named
    `transfer_id`; None when it is archived or the journal moved since (read again)."""
    if seq <= ck_seq:
        return None
    raw = await store.call("LINDEX", keys.journal, seq - ck_seq - 1)
    if raw is None:
        return None
    entry = Entry.decode(cast(bytes, raw), transfer_id)
    return entry if entry.seq == seq and entry.transfer_id == transfer_id else None


async def read_posting(
    store: Store, keys: PlayerKeys, transfer_id: str, seen: bytes, ck_seq: int
) -> Posting | None:
    """The posting of a txids value; None when its entry must be read and the journal
    moved meanwhile (read the value and the checkpoint again)."""
    posting = Posting.parse(seen)
    if posting.complete:
        return posting
    entry = await journal_entry(store, keys, transfer_id, posting.seq, ck_seq)
    return None if entry is None else Posting.of(entry)
