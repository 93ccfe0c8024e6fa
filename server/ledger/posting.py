"""What the txids hash says of a transfer id: its kind, coins, account and entry seq."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Posting:
    """What the txids hash says of a transfer: `<kind>|<coins>|<account>|<seq>`."""

    kind: str
    coins: int
    account: str
    seq: int

    @classmethod
    def parse(cls, raw: bytes) -> Posting:
        kind, coins, *account, seq = raw.decode().split("|")
        return cls(kind, int(coins), "|".join(account), int(seq))
