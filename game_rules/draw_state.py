"""The lucky draw's data: the player's `draw` state field (the client seed, and per pool
the nonce, the misses toward the guarantee and the day's draws), a draw as the period's
log records it, and the wire form of a pool's prize table as frozen with a period's seed.
The algorithm that uses them is in game_rules/draw.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from typing import Any, cast

from game_rules.rules import (
    DRAW_PERIODS,
    PRIZE_KINDS,
    DrawPeriod,
    PoolRules,
    PrizeCatalog,
    PrizeKind,
    PrizeRules,
)


def pool_to_wire(pool: PoolRules) -> dict[str, Any]:
    """The pool's table as frozen with a period's seed (and shown to players)."""
    return {
        "name": pool.name,
        "cost_coins": pool.cost_coins,
        "period": pool.period,
        "draws_per_day_max": pool.draws_per_day_max,
        "draws_per_period_max": pool.draws_per_period_max,
        "pity_misses": pool.pity_misses,
        "pity_prize": pool.pity_prize,
        "fallback": pool.fallback,
        "prizes": [
            {"name": p.name, "kind": p.kind, "weight": p.weight, "coins": p.coins, "stock": p.stock}
            for p in pool.prizes.entries
        ],
    }


def pool_from_wire(wire: dict[str, Any]) -> PoolRules:
    prizes = []
    for p in wire["prizes"]:
        if p["kind"] not in PRIZE_KINDS:
            raise ValueError(f"unknown prize kind {p['kind']!r}")
        kind = cast(PrizeKind, p["kind"])
        prizes.append(PrizeRules(p["name"], kind, p["weight"], p["coins"], p["stock"]))
    if wire["period"] not in DRAW_PERIODS:
        raise ValueError(f"unknown period {wire['period']!r}")
    return PoolRules(
        name=wire["name"],
        cost_coins=wire["cost_coins"],
        period=cast(DrawPeriod, wire["period"]),
        draws_per_day_max=wire["draws_per_day_max"],
        draws_per_period_max=wire["draws_per_period_max"],
        pity_misses=wire["pity_misses"],
        pity_prize=wire["pity_prize"],
        fallback=wire["fallback"],
        prizes=PrizeCatalog(tuple(prizes)),
    )


@dataclass(frozen=True, slots=True)
class PoolState:
    """A player's standing in one pool: the next nonce, misses toward the guarantee, and
    the draws of the business day `day`."""

    nonce: int = 0
    misses: int = 0
    day: date | None = None
    draws_today: int = 0

    def draws_on(self, day: date) -> int:
        return self.draws_today if self.day == day else 0


@dataclass(frozen=True, slots=True)
class DrawState:
    """The player's `draw` field: the client seed (shared by every pool) and each pool's
    standing, for the pools of the rules (a pool gone from the rules is dropped)."""

    client_seed: str = ""  # "": none chosen yet (draws use DEFAULT_CLIENT_SEED)
    pools: tuple[tuple[str, PoolState], ...] = ()

    def pool(self, name: str) -> PoolState:
        return next((s for n, s in self.pools if n == name), PoolState())

    def with_pool(self, name: str, state: PoolState, keep: frozenset[str]) -> DrawState:
        others = tuple((n, s) for n, s in self.pools if n != name and n in keep)
        return replace(self, pools=(*others, (name, state)))

    def to_wire(self) -> dict[str, Any]:
        return {
            "cs": self.client_seed,
            "p": {
                n: [s.nonce, s.misses, s.day.isoformat() if s.day else None, s.draws_today]
                for n, s in self.pools
            },
        }

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> DrawState:
        pools = tuple(
            (n, PoolState(v[0], v[1], date.fromisoformat(v[2]) if v[2] else None, v[3]))
            for n, v in wire.get("p", {}).items()
        )
        return cls(wire.get("cs", ""), pools)


@dataclass(frozen=True, slots=True)
class DrawRecord:
    """One draw as the period's log keeps it: everything needed to recompute it."""

    player: str
    nonce: int
    client_seed: str
    ts_ms: int
    number: int
    drawn: str
    awarded: str
    forced: bool
    sold_out: bool
    misses_before: int

    def to_wire(self) -> list[Any]:
        return [
            self.player,
            self.nonce,
            self.client_seed,
            self.ts_ms,
            self.number,
            self.drawn,
            self.awarded,
            self.forced,
            self.sold_out,
            self.misses_before,
        ]

    @classmethod
    def from_wire(cls, wire: list[Any]) -> DrawRecord:
        return cls(*wire)
