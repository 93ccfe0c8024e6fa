"""Named entries: the seeds of [seeds.<name>] and the partners of
[exchange.partners.<name>] are each a table of sub-tables keyed by name. `Catalog` keeps
them in file order as an immutable, hashable mapping (so `Rules` stays frozen and
hashable), and `read_catalog` reads one such table through a `Table`, checking the count
and every name, and reading each entry with the section's own reader.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

from game_rules.rulefile.table import Table

# Entry names: the message in read_catalog describes this pattern.
NAME_RE = re.compile(r"[a-z_]{1,24}")


class _Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=_Named)


@dataclass(frozen=True, slots=True)
class Catalog(Mapping[str, N]):
    """Entries by name, in file order: an immutable, hashable mapping (seeds, partners)."""

    entries: tuple[N, ...]

    def __getitem__(self, name: str) -> N:
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return (entry.name for entry in self.entries)

    def __len__(self) -> int:
        return len(self.entries)


def read_catalog(
    table: Table,
    what: str,
    read: Callable[[Table], N | None],
    len_min: int,
    len_max: int,
    name_re: re.Pattern[str],
) -> Catalog[N] | None:
    """A table of named sub-tables (seeds, partners), each read by `read`."""
    names = table.keys()
    ok = True
    if not len_min <= len(names) <= len_max:
        table.problem_here(f"must have {len_min}..{len_max} {what}s, got {len(names)}")
        ok = False
    entries: list[N] = []
    for name in names:
        if not name_re.fullmatch(name):
            table.problem(name, f"{what} names must be 1..24 characters of a-z and '_'")
            ok = False
        entry = table.section(name, read)
        if entry is None:
            ok = False
        else:
            entries.append(entry)
    return Catalog(tuple(entries)) if ok else None
