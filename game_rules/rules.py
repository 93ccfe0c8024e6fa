"""The rules file: every number of the game, read from TOML and checked once at start-up."""

from __future__ import annotations

import difflib
import hashlib
import itertools
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import time
from typing import Literal, Protocol, TypeVar
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
MS_PER_S = 1000
DAY_S = 86_400
PLOTS_MAX = 24
FRIENDS_CEILING = 5000  # the highest friends_max a rules file may set
FRIENDSHIP_COOLDOWN_S_MAX = 30 * DAY_S
WATER_SHARE_PCT_MAX = 90
WATER_FIXED_S_MAX = 7 * DAY_S
PER_DAY_MAX_CEILING = 1000  # the highest *_per_day_max a rules file may set
SEEDS_LEN_MAX = 32
THEFT_BATCH_S_MAX = DAY_S
SEED_NAME_RE = re.compile(r"[a-z_]{1,24}")
GROW_S_MAX = 30 * DAY_S
TRIGGERS_PER_DAY_MAX_CEILING = 100
WARN_DAYS_DEFAULT = 7
WARN_DAYS_MAX = 60
COINS_PER_YUAN_MAX = 10_000
HOLD_TIMEOUT_S_MAX = DAY_S
PAID_FEN_MAX = 10**10  # 100 million yuan: the largest amount of one order or item
ITEM_COINS_MAX_CEILING = 1_000_000
REVIEW_TIERS_LEN_MAX = 16
PARTNERS_LEN_MAX = 16
PARTNER_NAME_RE = SEED_NAME_RE
RATIO_TERM_MAX = 1000  # numerator and denominator of an exchange ratio
POINTS_PER_EXCHANGE_MAX_CEILING = 1_000_000
WaterMode = Literal["share", "fixed"]
WATER_MODES: tuple[WaterMode, ...] = ("share", "fixed")
_HHMM_RE = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


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
    warn_days: int = WARN_DAYS_DEFAULT  # warn when a batch's last valid day is this close


@dataclass(frozen=True, slots=True)
class SeedRules:
    """One seed of the catalog. Thieves each take steal_share_pct of the yield (floor, at
    least 1 coin); together at most floor(yield * steal_cap_pct / 100)."""

    name: str
    grow_ms: int
    yield_coins: int
    steal_share_pct: int
    steal_cap_pct: int


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


SeedCatalog = Catalog[SeedRules]


@dataclass(frozen=True, slots=True)
class WaterRules:
    """ "share": ripe_at moves forward by share_pct of the remaining time; "fixed": by
    fixed_ms; never past the moment of watering."""

    mode: WaterMode = "share"
    share_pct: int = 10
    fixed_ms: int = 1800 * MS_PER_S
    reward_coins: int = 2
    paid_per_day_max: int = 10


@dataclass(frozen=True, slots=True)
class StealRules:
    """Per thief and business day."""

    count_per_day_max: int = 10
    coins_per_day_max: int = 200


@dataclass(frozen=True, slots=True)
class FarmRules:
    plots: int = 6
    friends_max: int = 200
    friendship_cooldown_ms: int = DAY_S * MS_PER_S
    water: WaterRules = WaterRules()
    steal: StealRules = StealRules()


@dataclass(frozen=True, slots=True)
class NotifyRules:
    """Local times in the rules' time zone. quiet_start == quiet_end: no quiet hours."""

    quiet_start: time = time(22, 0)
    quiet_end: time = time(8, 0)
    triggers_per_day_max: int = 5
    streak_reminder_at: time = time(20, 0)
    theft_batch_ms: int = 600 * MS_PER_S  # thefts within this window make one trigger


@dataclass(frozen=True, slots=True)
class CheckoutRules:
    """Coins at checkout: coins_per_yuan coins are worth one yuan (100 fen); coins pay at
    most order_share_max_pct of an order; a reserve not posted within hold_timeout_ms is
    voided."""

    coins_per_yuan: int = 100
    order_share_max_pct: int = 50
    hold_timeout_ms: int = 900 * MS_PER_S


@dataclass(frozen=True, slots=True)
class OrderRewardRules:
    """Shopping feedback: an order paying at least paid_fen_min earns, per item,
    reward_pct of the item's paid amount in coins (floor), at most item_coins_max."""

    paid_fen_min: int = 5000
    reward_pct: int = 10
    item_coins_max: int = 1000


@dataclass(frozen=True, slots=True)
class ReviewRewardRules:
    """Coins for a review by the order's paid amount: the last tier whose
    paid_fen_at_least is <= the amount. Tiers ascend strictly and the first starts at 0."""

    tiers: tuple[tuple[int, int], ...] = ((0, 10), (10_000, 20))  # (paid_fen_at_least, coins)


@dataclass(frozen=True, slots=True)
class PartnerRules:
    """One partner's points: coins = floor(points * coins_per_point_num / coins_per_point_den),
    at most points_per_exchange_max points per exchange, any number of exchanges."""

    name: str
    coins_per_point_num: int
    coins_per_point_den: int
    points_per_exchange_max: int


PartnerCatalog = Catalog[PartnerRules]


# China Mobile points into coins at 1:1.5, at most 100 points per exchange (seeds/002).
PARTNERS_DEFAULT = PartnerCatalog((PartnerRules("china_mobile", 3, 2, 100),))


@dataclass(frozen=True, slots=True)
class ExchangeRules:
    partners: PartnerCatalog = PARTNERS_DEFAULT  # may be empty: no exchange at all


SEEDS_DEFAULT = SeedCatalog(
    (
        SeedRules("turnip", 4 * 3600 * MS_PER_S, 20, 10, 30),
        SeedRules("pumpkin", 8 * 3600 * MS_PER_S, 45, 10, 30),
        SeedRules("golden_pear", 24 * 3600 * MS_PER_S, 150, 10, 30),
    )
)


@dataclass(frozen=True, slots=True)
class Rules:
    version: str
    timezone: str
    tz: ZoneInfo
    signin: SignInRules
    expiry: ExpiryRules
    farm: FarmRules
    seeds: SeedCatalog  # a Mapping[str, SeedRules], never empty
    notify: NotifyRules
    digest: str  # first DIGEST_HEX_LEN hex chars of sha256(file text): which file is live
    # After digest, with defaults, so that every existing construction keeps working.
    checkout: CheckoutRules = CheckoutRules()
    order_reward: OrderRewardRules = OrderRewardRules()
    review_reward: ReviewRewardRules = ReviewRewardRules()
    exchange: ExchangeRules = ExchangeRules()


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
    farm = root.section("farm", _farm)
    # No [seeds] at all: the default catalog. A [seeds] table without seeds is a problem.
    seeds = root.section("seeds", _seeds) if root.has("seeds") else SEEDS_DEFAULT
    notify = root.section("notify", _notify)
    checkout = root.section("checkout", _checkout)
    rewards = root.section("rewards", _rewards)
    exchange = root.section("exchange", _exchange)
    root.close()

    if problems:
        raise RulesError(problems, source)
    # No problem reported means every reader returned a value.
    assert version is not None and timezone is not None and tz is not None
    assert signin is not None and expiry is not None
    assert farm is not None and seeds is not None and notify is not None
    assert checkout is not None and rewards is not None and exchange is not None
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:DIGEST_HEX_LEN]
    return Rules(
        version=version,
        timezone=timezone,
        tz=tz,
        signin=signin,
        expiry=expiry,
        farm=farm,
        seeds=seeds,
        notify=notify,
        digest=digest,
        checkout=checkout,
        order_reward=rewards[0],
        review_reward=rewards[1],
        exchange=exchange,
    )


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
    warn_days = table.integer(
        "warn_days", default=WARN_DAYS_DEFAULT, value_min=0, value_max=WARN_DAYS_MAX
    )
    if months is None or years_later is None or warn_days is None:
        return None
    return ExpiryRules(months, years_later, warn_days)


def _farm(table: _Table) -> FarmRules | None:
    default = FarmRules()
    plots = table.integer("plots", default=default.plots, value_min=1, value_max=PLOTS_MAX)
    friends_max = table.integer(
        "friends_max", default=default.friends_max, value_min=1, value_max=FRIENDS_CEILING
    )
    cooldown_s = table.integer(
        "friendship_cooldown_s",
        default=default.friendship_cooldown_ms // MS_PER_S,
        value_min=0,
        value_max=FRIENDSHIP_COOLDOWN_S_MAX,
    )
    water = table.section("water", _water)
    steal = table.section("steal", _steal)
    if plots is None or friends_max is None or cooldown_s is None:
        return None
    if water is None or steal is None:
        return None
    return FarmRules(plots, friends_max, cooldown_s * MS_PER_S, water, steal)


def _water(table: _Table) -> WaterRules | None:
    default = WaterRules()
    mode = table.choice("mode", WATER_MODES, default=default.mode)
    share_pct = table.integer(
        "share_pct", default=default.share_pct, value_min=1, value_max=WATER_SHARE_PCT_MAX
    )
    fixed_s = table.integer(
        "fixed_s", default=default.fixed_ms // MS_PER_S, value_min=1, value_max=WATER_FIXED_S_MAX
    )
    reward_coins = table.integer(
        "reward_coins", default=default.reward_coins, value_min=0, value_max=REWARD_COINS_MAX
    )
    paid_per_day_max = table.integer(
        "paid_per_day_max",
        default=default.paid_per_day_max,
        value_min=0,
        value_max=PER_DAY_MAX_CEILING,
    )
    if mode is None or share_pct is None or fixed_s is None:
        return None
    if reward_coins is None or paid_per_day_max is None:
        return None
    return WaterRules(mode, share_pct, fixed_s * MS_PER_S, reward_coins, paid_per_day_max)


def _steal(table: _Table) -> StealRules | None:
    default = StealRules()
    count = table.integer(
        "count_per_day_max",
        default=default.count_per_day_max,
        value_min=0,
        value_max=PER_DAY_MAX_CEILING,
    )
    coins = table.integer(
        "coins_per_day_max",
        default=default.coins_per_day_max,
        value_min=0,
        value_max=REWARD_COINS_MAX,
    )
    if count is None or coins is None:
        return None
    return StealRules(count, coins)


def _seeds(table: _Table) -> SeedCatalog | None:
    return _catalog(table, "seed", _seed, 1, SEEDS_LEN_MAX, SEED_NAME_RE)


def _catalog(
    table: _Table,
    what: str,
    read: Callable[[_Table], N | None],
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


def _seed(table: _Table) -> SeedRules | None:
    grow_s = table.integer("grow_s", value_min=1, value_max=GROW_S_MAX)
    yield_coins = table.integer("yield_coins", value_min=1, value_max=REWARD_COINS_MAX)
    share_pct = table.integer("steal_share_pct", value_min=1, value_max=99)
    cap_pct = table.integer("steal_cap_pct", value_min=1, value_max=99)  # < 100: owner keeps some
    if share_pct is not None and cap_pct is not None and share_pct > cap_pct:
        table.problem(
            "steal_share_pct", f"must be at most steal_cap_pct ({cap_pct}), got {share_pct}"
        )
        return None
    if grow_s is None or yield_coins is None or share_pct is None or cap_pct is None:
        return None
    return SeedRules(table.name, grow_s * MS_PER_S, yield_coins, share_pct, cap_pct)


def _notify(table: _Table) -> NotifyRules | None:
    default = NotifyRules()
    quiet = table.clock_times(
        "quiet_hours", len_exact=2, default=(default.quiet_start, default.quiet_end)
    )
    triggers = table.integer(
        "triggers_per_day_max",
        default=default.triggers_per_day_max,
        value_min=0,
        value_max=TRIGGERS_PER_DAY_MAX_CEILING,
    )
    reminder = table.clock_time("streak_reminder_at", default=default.streak_reminder_at)
    batch_s = table.integer(
        "theft_batch_s",
        default=default.theft_batch_ms // MS_PER_S,
        value_min=1,
        value_max=THEFT_BATCH_S_MAX,
    )
    if quiet is None or triggers is None or reminder is None or batch_s is None:
        return None
    return NotifyRules(quiet[0], quiet[1], triggers, reminder, batch_s * MS_PER_S)


def _checkout(table: _Table) -> CheckoutRules | None:
    default = CheckoutRules()
    coins_per_yuan = table.integer(
        "coins_per_yuan",
        default=default.coins_per_yuan,
        value_min=1,
        value_max=COINS_PER_YUAN_MAX,
    )
    # 0 turns paying with coins off; 100 would let coins pay a whole order.
    share_pct = table.integer(
        "order_share_max_pct", default=default.order_share_max_pct, value_min=0, value_max=100
    )
    hold_s = table.integer(
        "hold_timeout_s",
        default=default.hold_timeout_ms // MS_PER_S,
        value_min=1,
        value_max=HOLD_TIMEOUT_S_MAX,
    )
    if coins_per_yuan is None or share_pct is None or hold_s is None:
        return None
    return CheckoutRules(coins_per_yuan, share_pct, hold_s * MS_PER_S)


def _rewards(table: _Table) -> tuple[OrderRewardRules, ReviewRewardRules] | None:
    order = table.section("order", _order_reward)
    review = table.section("review", _review_reward)
    if order is None or review is None:
        return None
    return order, review


def _order_reward(table: _Table) -> OrderRewardRules | None:
    default = OrderRewardRules()
    paid_fen_min = table.integer(
        "paid_fen_min", default=default.paid_fen_min, value_min=0, value_max=PAID_FEN_MAX
    )
    reward_pct = table.integer("reward_pct", default=default.reward_pct, value_min=0, value_max=100)
    item_coins_max = table.integer(
        "item_coins_max",
        default=default.item_coins_max,
        value_min=0,
        value_max=ITEM_COINS_MAX_CEILING,
    )
    if paid_fen_min is None or reward_pct is None or item_coins_max is None:
        return None
    return OrderRewardRules(paid_fen_min, reward_pct, item_coins_max)


def _review_reward(table: _Table) -> ReviewRewardRules | None:
    tiers = table.int_pairs(
        "tiers",
        default=ReviewRewardRules().tiers,
        len_max=REVIEW_TIERS_LEN_MAX,
        ranges=((0, PAID_FEN_MAX), (1, REWARD_COINS_MAX)),
    )
    if tiers is None:
        return None
    shown = [list(tier) for tier in tiers]
    if tiers[0][0] != 0:
        table.problem("tiers", f"the first tier must start at 0 fen, got {shown}")
        return None
    if any(a[0] >= b[0] for a, b in itertools.pairwise(tiers)):
        table.problem("tiers", f"paid_fen_at_least must be strictly increasing, got {shown}")
        return None
    return ReviewRewardRules(tiers)


def _exchange(table: _Table) -> ExchangeRules | None:
    # No [exchange.partners] at all: the default partners. An empty table: no partners.
    partners = table.section("partners", _partners) if table.has("partners") else PARTNERS_DEFAULT
    return None if partners is None else ExchangeRules(partners)


def _partners(table: _Table) -> PartnerCatalog | None:
    return _catalog(table, "partner", _partner, 0, PARTNERS_LEN_MAX, PARTNER_NAME_RE)


def _partner(table: _Table) -> PartnerRules | None:
    num = table.integer("coins_per_point_num", value_min=1, value_max=RATIO_TERM_MAX)
    den = table.integer("coins_per_point_den", value_min=1, value_max=RATIO_TERM_MAX)
    points_max = table.integer(
        "points_per_exchange_max", value_min=1, value_max=POINTS_PER_EXCHANGE_MAX_CEILING
    )
    if num is None or den is None or points_max is None:
        return None
    return PartnerRules(table.name, num, den, points_max)


# --- the problem collector ------------------------------------------------------------------

_T = TypeVar("_T")
_S = TypeVar("_S", bound=str)
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


def _check_clock_time(table: _Table, key: str, value: object) -> time | None:
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
