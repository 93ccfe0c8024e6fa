"""The farm's state: the crops on a player's plots (`Crop`, `Farm`) and a player's farm
actions on one business day (`Daily`). These are frozen values that check their
invariants when built, so a farm that breaks one (a thief who took nothing, two crops of
one cycle) cannot exist. Each has a store format: `to_wire` gives a map with short keys,
and `from_wire` reads one back and raises ValueError on anything else, because the store
is not trusted. The actions on this state are in game_rules/farm.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from game_rules.rules import FRIENDS_CEILING, PLOTS_MAX, SEED_NAME_RE

_PLAYERS_PER_CROP_MAX = FRIENDS_CEILING  # thieves or waterers of one crop: friends only


def _wire_int(data: dict[object, object], key: str, what: str, value_min: int = 0) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < value_min:
        raise ValueError(f"{what} {key!r} must be an integer >= {value_min}, got {value!r}")
    return value


def _wire_map(data: object, keys: set[str], what: str) -> dict[object, object]:
    if not isinstance(data, dict) or set(data) != keys:
        raise ValueError(f"{what} must be a map with keys {sorted(keys)}, got {data!r}")
    return data


def _wire_day(value: object, what: str) -> date | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what} 'd' must be a date string or nil, got {value!r}")
    day = date.fromisoformat(value)  # ValueError on garbage
    if day.isoformat() != value:
        raise ValueError(f"{what} 'd' must be YYYY-MM-DD, got {value!r}")
    return day


def _wire_ids(value: object, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > _PLAYERS_PER_CROP_MAX:
        raise ValueError(f"crop {key!r} must be a list of player ids, got {value!r}")
    if not all(isinstance(item, str) for item in value):
        raise ValueError(f"crop {key!r} must hold player id strings, got {value!r}")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class Crop:
    seed: str
    cycle: int  # the farm's planting number, 1-based
    planted_at_ms: int
    ripe_at_ms: int
    yield_coins: int  # fixed when planted
    stolen_coins: int = 0
    thieves: tuple[str, ...] = ()  # who stole this cycle, in order
    waterers: tuple[str, ...] = ()  # who watered this cycle, in order

    def __post_init__(self) -> None:
        if not SEED_NAME_RE.fullmatch(self.seed):
            raise ValueError(f"crop seed must be a seed name, got {self.seed!r}")
        if self.cycle < 1 or self.yield_coins < 1 or self.planted_at_ms < 0:
            raise ValueError(f"crop cycle, yield and planted_at must be positive: {self!r}")
        if self.ripe_at_ms < self.planted_at_ms:
            raise ValueError(f"crop ripens before it was planted: {self!r}")
        if not 0 <= self.stolen_coins < self.yield_coins:
            raise ValueError(f"crop stolen_coins must be in 0..yield-1: {self!r}")
        for players in (self.thieves, self.waterers):
            if len(set(players)) != len(players) or not all(players):
                raise ValueError(f"crop thieves/waterers must be distinct ids: {self!r}")
        if len(self.thieves) > self.stolen_coins:
            raise ValueError(f"every thief took at least one coin: {self!r}")

    def to_wire(self) -> dict[str, object]:
        return {
            "s": self.seed,
            "c": self.cycle,
            "p": self.planted_at_ms,
            "r": self.ripe_at_ms,
            "y": self.yield_coins,
            "x": self.stolen_coins,
            "t": list(self.thieves),
            "w": list(self.waterers),
        }

    @classmethod
    def from_wire(cls, data: object) -> Crop:
        """Inverse of to_wire; anything else raises ValueError (the store is not trusted)."""
        crop = _wire_map(data, {"s", "c", "p", "r", "y", "x", "t", "w"}, "crop")
        seed = crop["s"]
        if not isinstance(seed, str):
            raise ValueError(f"crop 's' must be a seed name, got {seed!r}")
        return cls(
            seed=seed,
            cycle=_wire_int(crop, "c", "crop", 1),
            planted_at_ms=_wire_int(crop, "p", "crop"),
            ripe_at_ms=_wire_int(crop, "r", "crop"),
            yield_coins=_wire_int(crop, "y", "crop", 1),
            stolen_coins=_wire_int(crop, "x", "crop"),
            thieves=_wire_ids(crop["t"], "t"),
            waterers=_wire_ids(crop["w"], "w"),
        )


@dataclass(frozen=True, slots=True)
class Farm:
    plots: tuple[Crop | None, ...]
    cycles: int = 0  # plantings so far; the next crop gets cycle cycles + 1

    def __post_init__(self) -> None:
        if not 1 <= len(self.plots) <= PLOTS_MAX:
            raise ValueError(f"a farm has 1..{PLOTS_MAX} plots, got {len(self.plots)}")
        cycles = [crop.cycle for crop in self.plots if crop is not None]
        if len(set(cycles)) != len(cycles) or any(cycle > self.cycles for cycle in cycles):
            raise ValueError(f"crop cycles must be distinct and <= {self.cycles}: {cycles}")

    @classmethod
    def empty(cls, plots: int) -> Farm:
        return cls((None,) * plots)

    def fit(self, plots: int) -> Farm:
        """The farm with `plots` plots: pads with empty plots, and drops only empty plots
        past `plots` (a crop on a plot the rules no longer have stays until harvested)."""
        cells = list(self.plots) + [None] * (plots - len(self.plots))
        while len(cells) > plots and cells[-1] is None:
            cells.pop()
        fitted = tuple(cells)
        return self if fitted == self.plots else Farm(fitted, self.cycles)

    def to_wire(self) -> dict[str, object]:
        return {
            "p": [None if crop is None else crop.to_wire() for crop in self.plots],
            "n": self.cycles,
        }

    @classmethod
    def from_wire(cls, data: object, plots: int | None = None) -> Farm:
        """Inverse of to_wire, then fit(plots) when given; ValueError on anything else."""
        farm = _wire_map(data, {"p", "n"}, "farm")
        cells = farm["p"]
        if not isinstance(cells, list):
            raise ValueError(f"farm 'p' must be a list of crops, got {cells!r}")
        crops = tuple(None if cell is None else Crop.from_wire(cell) for cell in cells)
        result = cls(crops, _wire_int(farm, "n", "farm"))
        return result if plots is None else result.fit(plots)


@dataclass(frozen=True, slots=True)
class Daily:
    """A player's farm actions on one business day; `on(day)` starts a new day."""

    day: date | None = None
    water_paid: int = 0
    steal_count: int = 0
    steal_coins: int = 0

    def __post_init__(self) -> None:
        counts = (self.water_paid, self.steal_count, self.steal_coins)
        if min(counts) < 0 or (self.day is None and any(counts)):
            raise ValueError(f"daily counts must be >= 0, and 0 without a day: {self!r}")

    def on(self, day: date) -> Daily:
        """The counts for `day`: fresh on a later day. On the same or an earlier day (the
        clock went back) the counts go on, so a skewed clock never resets a cap."""
        if self.day is None or day > self.day:
            return Daily(day)
        return self

    def to_wire(self) -> dict[str, object]:
        day = None if self.day is None else self.day.isoformat()
        return {"d": day, "w": self.water_paid, "k": self.steal_count, "c": self.steal_coins}

    @classmethod
    def from_wire(cls, data: object) -> Daily:
        daily = _wire_map(data, {"d", "w", "k", "c"}, "daily")
        return cls(
            _wire_day(daily["d"], "daily"),
            _wire_int(daily, "w", "daily"),
            _wire_int(daily, "k", "daily"),
            _wire_int(daily, "c", "daily"),
        )
