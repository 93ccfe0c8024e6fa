"""The reader every section parser goes through: a `Table` is one TOML table at a dotted
path (such as "farm.water"). Its typed readers (integer in a range, string, choice,
"HH:MM" clock time, arrays of these) return the value, or None after appending a problem
such as "farm.water.share_pct: must be an integer in 1..90, got 120" to a list shared by
the whole file, so that one parse reports every problem at once instead of the first.
Each reader marks its key as read; close() reports the keys nobody read as unknown, with
a "did you mean" hint for a likely typo.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from datetime import time
from typing import TypeVar

_T = TypeVar("_T")
_S = TypeVar("_S", bound=str)
_REQUIRED = object()
_HHMM_RE = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


class Table:
    """One TOML table at a dotted path. Readers record problems instead of raising, and
    remember which keys they read so that close() can report the rest as unknown."""

    def __init__(self, path: str, data: dict[str, object], problems: list[str]) -> None:
        self._path = path
        self._data = data
        self._problems = problems
        self._read: set[str] = set()

    def where(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    @property
    def name(self) -> str:
        """The last part of the dotted path: a seed's name for [seeds.<name>]."""
        return self._path.rsplit(".", 1)[-1]

    def keys(self) -> list[str]:
        """Every key of the table in file order, each marked as read."""
        keys = list(self._data)
        self._read.update(keys)
        return keys

    def has(self, key: str) -> bool:
        return key in self._data

    def problem(self, key: str, message: str) -> None:
        self._problems.append(f"{self.where(key)}: {message}")

    def problem_here(self, message: str) -> None:
        self._problems.append(f"{self._path}: {message}")

    def section(self, key: str, read: Callable[[Table], _T]) -> _T:
        """Read a sub-table with `read`; a missing table reads as empty (defaults apply)."""
        value = self._get(key, {})
        if not isinstance(value, dict):
            self.problem(key, f"must be a table, got {_show(value)}")
            value = {}
        table = Table(self.where(key), value, self._problems)
        result = read(table)
        table.close()
        return result

    def string(self, key: str, *, len_max: int, default: object = _REQUIRED) -> str | None:
        value = self._get(key, default)
        if value is _REQUIRED:
            self.problem(key, "required, missing")
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(key, f"must be a non-empty string, got {_show(value)}")
            return None
        if len(value) > len_max:
            self.problem(key, f"must be at most {len_max} characters, got {len(value)}")
            return None
        return value

    def integer(
        self, key: str, *, value_min: int, value_max: int, default: object = _REQUIRED
    ) -> int | None:
        value = self._get(key, default)
        if value is _REQUIRED:
            self.problem(key, "required, missing")
            return None
        return _check_int(self, key, value, value_min, value_max)

    def int_list(
        self,
        key: str,
        *,
        len_max: int,
        value_min: int,
        value_max: int,
        default: object = _REQUIRED,
    ) -> tuple[int, ...] | None:
        value = self._array(key, default, "integers")
        if value is None:
            return None
        ok = True
        if not 1 <= len(value) <= len_max:
            self.problem(key, f"must have 1..{len_max} entries, got {len(value)}")
            ok = False
        for index, item in enumerate(value):
            ok = _check_int(self, f"{key}[{index}]", item, value_min, value_max) is not None and ok
        return tuple(v for v in value if isinstance(v, int)) if ok else None

    def int_pairs(
        self,
        key: str,
        *,
        len_max: int,
        ranges: tuple[tuple[int, int], tuple[int, int]],
        default: object = _REQUIRED,
    ) -> tuple[tuple[int, int], ...] | None:
        """An array of 1..len_max [a, b] integer pairs, a in ranges[0] and b in ranges[1]."""
        value = self._get(key, default)
        if value is _REQUIRED:
            self.problem(key, "required, missing")
            return None
        if isinstance(value, tuple):
            value = [list(pair) for pair in value]  # a default
        if not isinstance(value, list):
            self.problem(key, f"must be an array of [integer, integer] pairs, got {_show(value)}")
            return None
        if not 1 <= len(value) <= len_max:
            self.problem(key, f"must have 1..{len_max} entries, got {len(value)}")
            return None
        pairs: list[tuple[int, int]] = []
        for index, item in enumerate(value):
            where = f"{key}[{index}]"
            if not isinstance(item, list) or len(item) != 2:
                self.problem(where, f"must be an [integer, integer] pair, got {_show(item)}")
                continue
            first = _check_int(self, f"{where}[0]", item[0], *ranges[0])
            second = _check_int(self, f"{where}[1]", item[1], *ranges[1])
            if first is not None and second is not None:
                pairs.append((first, second))
        return tuple(pairs) if len(pairs) == len(value) else None

    def choice(
        self, key: str, options: tuple[_S, ...], *, default: object = _REQUIRED
    ) -> _S | None:
        value = self._get(key, default)
        if value is _REQUIRED:
            self.problem(key, "required, missing")
            return None
        for option in options:
            if value == option and isinstance(value, str):
                return option
        shown = ", ".join(repr(option) for option in options)
        self.problem(key, f"must be one of {shown}, got {_show(value)}")
        return None

    def clock_time(self, key: str, *, default: object = _REQUIRED) -> time | None:
        value = self._get(key, default)
        if value is _REQUIRED:
            self.problem(key, "required, missing")
            return None
        return _check_clock_time(self, key, value)

    def clock_times(
        self, key: str, *, len_exact: int, default: object = _REQUIRED
    ) -> tuple[time, ...] | None:
        value = self._array(key, default, '"HH:MM" strings')
        if value is None:
            return None
        if len(value) != len_exact:
            self.problem(key, f"must have exactly {len_exact} entries, got {len(value)}")
            return None
        times = [_check_clock_time(self, f"{key}[{i}]", item) for i, item in enumerate(value)]
        checked = [moment for moment in times if moment is not None]
        return tuple(checked) if len(checked) == len(times) else None

    def _array(self, key: str, default: object, what: str) -> list[object] | None:
        """The array at `key` (a tuple default reads as a list), or None with a problem."""
        value = self._get(key, default)
        if value is _REQUIRED:
            self.problem(key, "required, missing")
            return None
        if isinstance(value, tuple):
            value = list(value)  # a default
        if not isinstance(value, list):
            self.problem(key, f"must be an array of {what}, got {_show(value)}")
            return None
        return value

    def close(self) -> None:
        for key in sorted(self._data.keys() - self._read):
            hint = difflib.get_close_matches(key, sorted(self._read), n=1)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
            self.problem(key, f"unknown key{suffix}")

    def _get(self, key: str, default: object) -> object:
        self._read.add(key)
        return self._data.get(key, default)


def _check_int(table: Table, key: str, value: object, value_min: int, value_max: int) -> int | None:
    # TOML booleans arrive as Python bools, which are ints: refuse them explicitly.
    if isinstance(value, bool) or not isinstance(value, int):
        table.problem(key, f"must be an integer, got {_show(value)}")
        return None
    if not value_min <= value <= value_max:
        table.problem(key, f"must be an integer in {value_min}..{value_max}, got {value}")
        return None
    return value


def _check_clock_time(table: Table, key: str, value: object) -> time | None:
    if isinstance(value, time) and (value.second, value.microsecond) == (0, 0):
        return value  # a default, or a TOML local time such as 22:00:00
    match = _HHMM_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        table.problem(key, f'must be a local time "HH:MM" (00:00..23:59), got {_show(value)}')
        return None
    return time(int(match[1]), int(match[2]))


def _show(value: object) -> str:
    kinds = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array"}
    kind = "table" if isinstance(value, dict) else kinds.get(type(value), type(value).__name__)
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{kind} {shown}"
