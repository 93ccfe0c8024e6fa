"""The rules file: every number of the game, read from TOML and checked once at start-up."""

from __future__ import annotations

import difflib
import hashlib
import itertools
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from game_rules.errors import RulesError

TIMEZONE_DEFAULT = "Asia/Shanghai"
VERSION_LEN_MAX = 64
TIMEZONE_LEN_MAX = 64
DIGEST_HEX_LEN = 12
SIGNIN_REWARDS_LEN_MAX = 31
REWARD_COINS_MAX = 100_000
PERIOD_END_MONTHS_DEFAULT = (6, 12)
EXPIRY_YEARS_LATER_DEFAULT = 1
EXPIRY_YEARS_LATER_MAX = 10


@dataclass(frozen=True, slots=True)
class SignInRules:
    """Coins by streak day, as a cycle: day n pays rewards[(n - 1) % len(rewards)]."""

    rewards: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ExpiryRules:
    """Coins earned on day d expire at the end of the first period-end month >= d.month,
    `years_later` years after d.year."""

    period_end_months: tuple[int, ...] = PERIOD_END_MONTHS_DEFAULT
    years_later: int = EXPIRY_YEARS_LATER_DEFAULT


@dataclass(frozen=True, slots=True)
class Rules:
    version: str
    timezone: str
    tz: ZoneInfo
    signin: SignInRules
    expiry: ExpiryRules
    digest: str  # first DIGEST_HEX_LEN hex chars of sha256(file text): which file is live


def parse_rules(text: str, source: str = "<rules>") -> Rules:
    """Parse and validate a rules file; raise RulesError listing every problem found."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise RulesError([f"not valid TOML: {error}"], source) from error

    problems: list[str] = []
    root = _Table("", data, problems)
    version = root.string("version", len_max=VERSION_LEN_MAX)
    timezone, tz = _timezone(root)
    signin = root.section("signin", _signin)
    expiry = root.section("expiry", _expiry)
    root.close()

    if problems:
        raise RulesError(problems, source)
    # No problem reported means every reader returned a value.
    assert version is not None and timezone is not None and tz is not None
    assert signin is not None and expiry is not None
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:DIGEST_HEX_LEN]
    return Rules(version, timezone, tz, signin, expiry, digest)


# --- sections: one small function each, reading through a _Table -------------------------


def _timezone(root: _Table) -> tuple[str | None, ZoneInfo | None]:
    name = root.string("timezone", default=TIMEZONE_DEFAULT, len_max=TIMEZONE_LEN_MAX)
    if name is None:
        return None, None
    try:
        return name, ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError/OSError: keys like "../x", "/etc/passwd" or a tzdata directory name.
        root.problem("timezone", f"must be an IANA time zone such as 'Asia/Shanghai', got {name!r}")
        return None, None


def _signin(table: _Table) -> SignInRules | None:
    rewards = table.int_list(
        "rewards", len_max=SIGNIN_REWARDS_LEN_MAX, value_min=1, value_max=REWARD_COINS_MAX
    )
    return None if rewards is None else SignInRules(rewards)


def _expiry(table: _Table) -> ExpiryRules | None:
    months = table.int_list(
        "period_end_months",
        default=PERIOD_END_MONTHS_DEFAULT,
        len_max=12,
        value_min=1,
        value_max=12,
    )
    if months is not None:
        if any(a >= b for a, b in itertools.pairwise(months)):
            table.problem("period_end_months", f"must be strictly increasing, got {list(months)}")
            months = None
        elif months[-1] != 12:
            # Every month needs a period end at or after it, so the year must close.
            table.problem("period_end_months", f"must end with 12, got {list(months)}")
            months = None
    years_later = table.integer(
        "years_later",
        default=EXPIRY_YEARS_LATER_DEFAULT,
        value_min=0,
        value_max=EXPIRY_YEARS_LATER_MAX,
    )
    if months is None or years_later is None:
        return None
    return ExpiryRules(months, years_later)


# --- the problem collector ------------------------------------------------------------------

_T = TypeVar("_T")
_REQUIRED = object()


class _Table:
    """One TOML table at a dotted path. Readers record problems instead of raising, and
    remember which keys they read so that close() can report the rest as unknown."""

    def __init__(self, path: str, data: dict[str, object], problems: list[str]) -> None:
        self._path = path
        self._data = data
        self._problems = problems
        self._read: set[str] = set()

    def where(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def problem(self, key: str, message: str) -> None:
        self._problems.append(f"{self.where(key)}: {message}")

    def section(self, key: str, read: Callable[[_Table], _T]) -> _T:
        """Read a sub-table with `read`; a missing table reads as empty (defaults apply)."""
        value = self._get(key, {})
        if not isinstance(value, dict):
            self.problem(key, f"must be a table, got {_show(value)}")
            value = {}
        table = _Table(self.where(key), value, self._problems)
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
        value = self._get(key, default)
        if value is _REQUIRED:
            self.problem(key, "required, missing")
            return None
        if isinstance(value, tuple):
            value = list(value)  # a default
        if not isinstance(value, list):
            self.problem(key, f"must be an array of integers, got {_show(value)}")
            return None
        ok = True
        if not 1 <= len(value) <= len_max:
            self.problem(key, f"must have 1..{len_max} entries, got {len(value)}")
            ok = False
        for index, item in enumerate(value):
            ok = _check_int(self, f"{key}[{index}]", item, value_min, value_max) is not None and ok
        return tuple(value) if ok else None

    def close(self) -> None:
        for key in sorted(self._data.keys() - self._read):
            hint = difflib.get_close_matches(key, sorted(self._read), n=1)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
            self.problem(key, f"unknown key{suffix}")

    def _get(self, key: str, default: object) -> object:
        self._read.add(key)
        return self._data.get(key, default)


def _check_int(
    table: _Table, key: str, value: object, value_min: int, value_max: int
) -> int | None:
    # TOML booleans arrive as Python bools, which are ints: refuse them explicitly.
    if isinstance(value, bool) or not isinstance(value, int):
        table.problem(key, f"must be an integer, got {_show(value)}")
        return None
    if not value_min <= value <= value_max:
        table.problem(key, f"must be an integer in {value_min}..{value_max}, got {value}")
        return None
    return value


def _show(value: object) -> str:
    kinds = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array"}
    kind = "table" if isinstance(value, dict) else kinds.get(type(value), type(value).__name__)
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{kind} {shown}"
