"""Key names of a lucky-draw pool. A pool is shared by every player, so its keys live
under their own hash tag `{draw:<pool>}` (one slot per pool, apart from every player's):
the period records with their seeds, the stock taken, the reservations and the draw log.
The player's side of a draw (coins, nonce, misses) is committed in the player's slot.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.store.keys import PREFIX


@dataclass(frozen=True, slots=True)
class DrawKeys:
    pool: str

    @property
    def tag(self) -> str:
        return f"{PREFIX}:{{draw:{self.pool}}}"

    @property
    def periods(self) -> str:
        """zset: period id -> start_ms, the periods whose records are kept."""
        return f"{self.tag}:periods"

    @property
    def due(self) -> str:
        """zset: "<period id>|<draw id>" -> expires_ms, the reservations to sweep."""
        return f"{self.tag}:due"

    def period(self, period_id: str) -> str:
        """hash: seed, hash, table, start_ms, end_ms, created_ms."""
        return f"{self.tag}:period:{period_id}"

    def stock(self, period_id: str) -> str:
        """hash: prize -> units taken in the period."""
        return f"{self.tag}:stock:{period_id}"

    def pending(self, period_id: str) -> str:
        """hash: draw id -> reservation (draw_reserve.lua)."""
        return f"{self.tag}:pending:{period_id}"

    def log(self, period_id: str) -> str:
        """list: the period's confirmed draw records (msgpack), bounded by the pool's
        draws_per_period_max."""
        return f"{self.tag}:log:{period_id}"

    def done(self, period_id: str) -> str:
        """hash: draw id -> "1", the draws confirmed into the log (each exactly once)."""
        return f"{self.tag}:done:{period_id}"

    def settle_keys(self, period_id: str) -> list[str]:
        """KEYS of draw_reserve.lua and draw_settle.lua."""
        return [
            self.stock(period_id),
            self.pending(period_id),
            self.log(period_id),
            self.due,
            self.done(period_id),
        ]


def draw_id(player_id: str, nonce: int) -> str:
    """A draw's id in its pool: the nonce first, so the player id (which has no ':') is
    the rest."""
    return f"{nonce}:{player_id}"


def split_draw_id(value: str) -> tuple[str, int]:
    nonce, player_id = value.split(":", 1)
    return player_id, int(nonce)
