"""Short codes for the system accounts a journal entry names.

A journal entry (format 2, server/ledger/ledger.py) names its system account by a small
integer where the account has one here, and by its name otherwise: `mint:signin` costs
one byte instead of twelve in every entry. The table only grows: a code, once written to a
journal, names its account forever, so never renumber or reuse one. An account missing
here still works; its entries carry the name.

Give a code to a new account in the release that introduces it, never to an account that
already has entries: during a rolling deploy the older processes must not meet a code they
do not know (they read it as `code:<n>`, which `verify` then reports as an account with no
balance), and a retry from an older process must post the account as it was posted.
commit.lua accepts either form when it compares a repeated transfer id.

commit.lua gets the code with each transfer from the shell and stores the name when there
is none; the entries it makes itself (`sink:expire`, `clawback`) carry the codes in its
SCRIPT_ACCOUNTS table, which tests/test_journal_format.py holds to this one.
"""

from __future__ import annotations

ACCOUNT_CODES: dict[str, int] = {
    "mint:signin": 1,
    "mint:harvest": 2,
    "mint:water": 3,
    "mint:steal": 4,
    "mint:task": 5,
    "mint:order": 6,
    "mint:review": 7,
    "mint:exchange": 8,
    "mint:grant": 9,
    "mint:draw": 10,
    "sink:redeem": 11,
    "sink:mall": 12,
    "sink:draw": 13,
    "sink:expire": 14,
    "clawback": 15,
}
ACCOUNT_NAMES: dict[int, str] = {code: name for name, code in ACCOUNT_CODES.items()}


def code_of(account: str) -> int | None:
    return ACCOUNT_CODES.get(account)


def name_of(stored: int | str) -> str:
    """The account an entry names: its code's name, or the name stored as it is."""
    if isinstance(stored, int):
        return ACCOUNT_NAMES.get(stored, f"code:{stored}")
    return stored
