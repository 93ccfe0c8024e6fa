"""Transfer ids that cannot collide: one per business event, built from typed fields.

The ledger refuses an id it has seen with another payload and answers `exists` for the
same one, so two events must never share an id, whatever the platform's ids contain.
"""

from __future__ import annotations

import hashlib
import re

# Ids from the platform: printable ASCII without spaces, so one character is one byte. They
# may contain ":", the separator of transfer ids: transfer_id() keeps the ids unambiguous.
ID_RE = re.compile(r"[!-~]{1,128}")
TRANSFER_ID_BYTES_MAX = 200  # the ledger's limit on a transfer id
SEPARATOR = ":"
DIGEST_MARK = "#"


def transfer_id(kind: str, *fields: str) -> str:
    """The ledger's id of a business event: `kind:field:field...` when no field contains
    the separator and the id fits TRANSFER_ID_BYTES_MAX (the ids written before this scheme
    had that form, so a retry of an old event still finds its id), else `kind#<sha-256>` of
    the length-prefixed fields (64 hex digits).

    Unambiguous by construction: the kind ends at the first ":" or "#" (kinds have
    neither); with ":" the fields are read back by splitting (they have no ":" and each kind
    has a fixed number of them); with "#" the digest names the fields, length-prefixed.
    No id of this form equals an old-form id of another event: an old id whose fields
    contained ":" has more separators than its kind's plain form, and never a "#" after
    its kind. The names commit.lua makes (`debt:`, `debt#`, `expire:`) are not kinds.
    """
    if not kind.isalpha():
        raise ValueError(f"a transfer kind is letters only, got {kind!r}")
    plain = SEPARATOR.join((kind, *fields))
    separated = all(fields) and not any(SEPARATOR in f for f in fields)
    if separated and len(plain.encode()) <= TRANSFER_ID_BYTES_MAX:
        return plain
    digest = hashlib.sha256()
    for part in (kind, *fields):
        raw = part.encode()
        digest.update(len(raw).to_bytes(4, "big") + raw)
    return f"{kind}{DIGEST_MARK}{digest.hexdigest()}"


def reversal_id(target: str) -> str:
    """The id of an operator's reversal of transfer `target`: `reverse:<target>` (its one
    field is the rest of the id, so it may contain ":"), or `reverse#<sha-256 of target>`
    when that would not fit TRANSFER_ID_BYTES_MAX or when `target` ends with ":debt" (an
    old-form debt repayment of a reversal was `reverse:<id>:debt`)."""
    plain = f"reverse{SEPARATOR}{target}"
    if len(plain.encode()) <= TRANSFER_ID_BYTES_MAX and not target.endswith(":debt"):
        return plain
    return f"reverse{DIGEST_MARK}{hashlib.sha256(target.encode()).hexdigest()}"


def order_reward_id(order_id: str) -> str:
    return transfer_id("order", order_id, "reward")
