"""The owner's farm: look at it, plant, harvest; and the timers that announce ripe crops."""

from __future__ import annotations

import re
from typing import Any

from game_rules import business_day
from game_rules.farm import crop_stage, crop_view, harvest, plant
from game_rules.notify import TheftBatch, add_theft, collapse_key, theft_summary
from server.ledger.commit import Commit, apply
from server.ledger.ledger import Transfer
from server.ops import triggers
from server.ops.components import farm_of, pack
from server.pipeline import (
    COMMIT_ATTEMPTS_MAX,
    Change,
    IntArg,
    Op,
    Services,
    Snapshot,
    StrArg,
    load,
    rule_op,
)
from server.protocol import Request
from server.settings import Settings
from server.store.keys import PlayerKeys
from server.store.timers import member

SEED_PATTERN = re.compile(r"[a-z_]{1,24}")
PLOT_INDEX_MAX = 23  # rules allow up to 24 plots; the rule answers BAD_PLOT past the farm


def plots_view(snapshot: Snapshot, services: Services, now_ms: int) -> list[dict[str, Any]]:
    farm = farm_of(snapshot, services.rulebook.rules)
    return [
        {"plot": i, "empty": True} if crop is None else {"plot": i, **crop_view(crop, now_ms)}
        for i, crop in enumerate(farm.plots)
    ]


async def farm(
    services: Services, keys: PlayerKeys, request: Request, args: dict[str, Any]
) -> dict[str, Any]:
    snapshot, _ = await load(services.store, keys, None)
    now_ms = services.clock.now_ms()
    return {
        "now_ms": now_ms,
        "plots": plots_view(snapshot, services, now_ms),
        "balance": snapshot.balance,
    }


def decide_plant(
    services: Services, keys: PlayerKeys, snapshot: Snapshot, args: dict[str, Any], now_ms: int
) -> Change:
    rules = services.rulebook.rules
    plot = args["plot"]
    outcome = plant(farm_of(snapshot, rules), rules, now_ms, plot, args["seed"])
    crop = outcome.crop
    ripe = member("ripe", keys.player_id, plot, crop.cycle)
    commit = Commit(fields={"farm": pack(outcome.farm.to_wire())}, timers=[(ripe, crop.ripe_at_ms)])
    return Change({"plot": plot, "crop": crop_view(crop, now_ms)}, commit)


def decide_harvest(
    services: Services, keys: PlayerKeys, snapshot: Snapshot, args: dict[str, Any], now_ms: int
) -> Change:
    rules = services.rulebook.rules
    plot = args["plot"]
    outcome = harvest(farm_of(snapshot, rules), rules, now_ms, plot, keys.player_id)
    transfers = []
    if outcome.credit is not None:
        credit = outcome.credit
        transfers.append(
            Transfer(
                credit.transfer_id,
                "c",
                credit.amount,
                f"mint:{credit.source}",
                credit.batch,
                ref=f"plot {plot}",
            )
        )
    commit = Commit(fields={"farm": pack(outcome.farm.to_wire())}, transfers=transfers)
    return Change({"plot": plot, "coins": outcome.coins}, commit)


async def fire_ripe(services: Services, parts: list[str], due_ms: int, now_ms: int) -> None:
    """Timer `ripe|owner|plot|cycle`: tell the owner, or their phone when no socket heard."""
    owner, plot, cycle = parts[0], int(parts[1]), int(parts[2])
    keys = PlayerKeys(owner)
    snapshot, _ = await load(services.store, keys, None)
    plots = farm_of(snapshot, services.rulebook.rules).plots
    crop = plots[plot] if plot < len(plots) else None
    if crop is None or crop.cycle != cycle:
        return  # harvested already, or a new crop grows there
    if crop_stage(crop, now_ms) != "ripe":  # fired early (a clock moved): wait for it
        await apply(
            services.store,
            keys,
            Commit(timers=[("|".join(["ripe", *parts]), crop.ripe_at_ms)]),
            now_ms,
        )
        return
    data = {"plot": plot, "cycle": cycle, "seed": crop.seed}
    done = await apply(services.store, keys, Commit(pushes=[("crop_ripe", pack(data))]), now_ms)
    if done.receivers and done.receivers[0] == 0:
        key = collapse_key("ripe", owner, plot=plot, cycle=cycle)
        await triggers.offer(services, owner, "crop_ripe", key, data, now_ms)


async def note_theft(services: Services, owner: str, thief: str, coins: int, now_ms: int) -> None:
    """A theft no socket of the owner heard: add it to the owner's theft batch."""
    keys = PlayerKeys(owner)
    rules = services.rulebook.rules
    for _ in range(COMMIT_ATTEMPTS_MAX):
        snapshot, _ = await load(services.store, keys, None)
        wire = snapshot.component("thefts")
        batch = TheftBatch() if wire is None else TheftBatch.from_wire(wire)
        batch, due_ms = add_theft(batch, rules, now_ms, thief, coins)
        timers = [] if due_ms is None else [(member("thefts", owner), due_ms)]
        commit = Commit(
            expected_ver=snapshot.ver, fields={"thefts": pack(batch.to_wire())}, timers=timers
        )
        if (await apply(services.store, keys, commit, now_ms)).status != "CONFLICT":
            return


async def fire_thefts(services: Services, parts: list[str], due_ms: int, now_ms: int) -> None:
    """Timer `thefts|owner`: the batch window closed; one trigger for all its thefts."""
    owner = parts[0]
    keys = PlayerKeys(owner)
    rules = services.rulebook.rules
    for _ in range(COMMIT_ATTEMPTS_MAX):
        snapshot, _ = await load(services.store, keys, None)
        wire = snapshot.component("thefts")
        if wire is None:
            return
        batch = TheftBatch.from_wire(wire)
        if batch.until_ms == 0:
            return
        key = collapse_key("stolen", owner, day=business_day(now_ms, rules.tz))
        summary = theft_summary(batch)
        triggers.checked(owner, "stolen", key, summary)  # raises before the batch is cleared
        commit = Commit(expected_ver=snapshot.ver, fields={"thefts": pack(TheftBatch().to_wire())})
        if (await apply(services.store, keys, commit, now_ms)).status == "CONFLICT":
            continue
        await triggers.offer(services, owner, "stolen", key, summary, now_ms)
        return


def ops(settings: Settings) -> dict[str, Op]:
    plot = IntArg(0, PLOT_INDEX_MAX, required=True)
    return {
        "farm": Op({}, farm),
        "plant": Op({"plot": plot, "seed": StrArg(SEED_PATTERN)}, rule_op(decide_plant)),
        "harvest": Op({"plot": plot}, rule_op(decide_harvest)),
    }
