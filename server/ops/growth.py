"""Growth value and member levels, the shell side of game_rules/growth.py: the `growth` op,
the panel `state` shows, what a commit that adds growth writes, and the recompute job.

Anything that adds growth (the platform's growth events, tasks) writes the `growth` field
in the same Commit as the coins it goes with, and a `level_up` push when the level shown
rose (see `growth_commit`); it calls `enlist` first so that the recompute job finds the
player. Levels only change at a recompute: the first touch of a new period takes it, and
the daily job takes it for everyone nobody touched, pushing `level_up` to those who rose.
"""

from __future__ import annotations

from typing import Any

from game_rules.growth import GrowthOutcome, GrowthState, growth_view, recompute
from game_rules.rules import Level, Rules
from server.ledger.commit import Commit, apply
from server.ops.components import growth_from, pack
from server.pipeline import COMMIT_ATTEMPTS_MAX, Op, Services
from server.protocol import Request
from server.settings import Settings
from server.store.keys import BUCKETS, PlayerKeys, growth_players
from server.store.store import Store

RECOMPUTE_BATCH_MAX = 200  # players per SSCAN page, read in one round trip
LEVEL_UP = "level_up"


def level_wire(level: Level) -> dict[str, Any]:
    perks = level.perks
    return {
        "index": level.index,
        "name": level.name,
        "threshold": level.threshold,
        "perks": {
            "task_coin_multiplier_pct": perks.task_coin_multiplier_pct,
            "birthday_gift_coins": perks.birthday_gift_coins,
            "coins_per_yuan": perks.coins_per_yuan,
            "order_share_max_pct": perks.order_share_max_pct,
        },
    }


def panel(state: GrowthState, rules: Rules, now_ms: int) -> dict[str, Any]:
    """What `state` shows: the value, the level, the next level and what raises it."""
    view = growth_view(state, rules, now_ms)
    return {
        "value": view.value,
        "level": level_wire(view.level),
        "next_level": None if view.next_level is None else level_wire(view.next_level),
        "next_threshold": None if view.next_level is None else view.next_level.threshold,
        "to_next": None if view.next_level is None else view.next_level.threshold - view.value,
        "pending": view.pending,
        "next_recompute": view.next_recompute.isoformat(),
        "raises": [
            {
                "event": r.event,
                "points": r.points,
                "per": r.per,
                "times_max": r.times_max,
                "left": r.left,
            }
            for r in view.raises
        ],
    }


def history(state: GrowthState) -> dict[str, Any]:
    """The stored history: sums per month and event, standing events, the last reports."""
    return {
        "months": [
            {"month": f"{m // 100:04d}-{m % 100:02d}", "events": _sums(sums)}
            for m, sums in state.months
        ],
        "standing": _sums(state.ever),
        "recent": [
            {"at_ms": at_ms, "event": event, "added": added, "ref": ref}
            for at_ms, event, added, ref in state.recent
        ],
        "shown": state.shown,
        "level": state.level,
        "period": None if state.period is None else state.period.isoformat(),
        "pending": state.pending,
    }


def _sums(sums: tuple[tuple[str, int, int], ...]) -> list[dict[str, Any]]:
    return [{"event": e, "count": c, "points": p} for e, c, p in sums]


def level_up_data(outcome: GrowthOutcome) -> dict[str, Any]:
    return {
        "level": outcome.level_after.index,
        "name": outcome.level_after.name,
        "level_before": outcome.level_before.index,
        "value": outcome.state.shown,
    }


def growth_commit(outcome: GrowthOutcome) -> tuple[dict[str, bytes], list[tuple[str, bytes]]]:
    """(fields, pushes) to add to the Commit of whatever added growth: the `growth` field,
    and a `level_up` push when the level shown rose (a fall is shown, not pushed)."""
    fields = {"growth": pack(outcome.state.to_wire())}
    rose = outcome.level_after.index > outcome.level_before.index
    pushes = [(LEVEL_UP, pack(level_up_data(outcome)))] if rose else []
    return fields, pushes


async def enlist(store: Store, keys: PlayerKeys) -> None:
    """Make the recompute job walk this player (idempotent; before the first growth commit)."""
    await store.call("SADD", growth_players(keys.bucket), keys.player_id)


async def growth_op(
    services: Services, keys: PlayerKeys, request: Request, args: dict[str, Any]
) -> dict[str, Any]:
    raw = await services.store.call("HGET", keys.state, "growth")
    state = growth_from(raw)
    result = panel(state, services.rulebook.rules, services.clock.now_ms())
    result["recent"] = history(state)["recent"]
    return result


def ops(settings: Settings) -> dict[str, Op]:
    return {"growth": Op({}, growth_op)}


# --- the recompute job ------------------------------------------------------------------------


async def recompute_levels(services: Services) -> int:
    """Take the new period's value for every player with growth, RECOMPUTE_BATCH_MAX at a
    time per bucket; push `level_up` to those whose level rose. Returns states written."""
    written = 0
    for bucket in range(BUCKETS):
        cursor = 0
        while True:
            cursor, members = await services.store.call(
                "SSCAN", growth_players(bucket), cursor, "COUNT", RECOMPUTE_BATCH_MAX
            )
            cursor = int(cursor)
            players = [m.decode() for m in members]
            # COUNT is a hint: a small set comes back whole. Read at most a batch at once.
            for start in range(0, len(players), RECOMPUTE_BATCH_MAX):
                batch = players[start : start + RECOMPUTE_BATCH_MAX]
                written += await _recompute_batch(services, batch)
            if cursor == 0:
                break
    return written


async def _recompute_batch(services: Services, players: list[str]) -> int:
    reads = await services.store.call_many(
        *[("HMGET", PlayerKeys(p).state, "ver", "growth") for p in players]
    )
    written = 0
    for player, (ver, raw) in zip(players, reads, strict=True):
        if raw is not None and await _recompute_one(services, player, int(ver or 0), raw):
            written += 1
    return written


async def _recompute_one(services: Services, player: str, ver: int, raw: bytes) -> bool:
    keys = PlayerKeys(player)
    for _ in range(COMMIT_ATTEMPTS_MAX):
        rules = services.rulebook.rules
        now_ms = services.clock.now_ms()
        state = growth_from(raw)
        outcome = recompute(state, rules, now_ms)
        if outcome.state == state:
            return False  # this period's value is taken already
        fields, pushes = growth_commit(outcome)
        commit = Commit(expected_ver=ver, fields=fields, pushes=pushes)
        done = await apply(services.store, keys, commit, now_ms)
        if done.status == "ok":
            return True
        if done.status != "CONFLICT":
            raise RuntimeError(f"growth recompute of {player}: {done.status}")
        got = await services.store.call("HMGET", keys.state, "ver", "growth")
        ver, raw = int(got[0] or 0), got[1]  # another op wrote meanwhile: read again
        if raw is None:
            return False
    return False
