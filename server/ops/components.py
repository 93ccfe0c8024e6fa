"""Rule state stored as msgpack components of a player's state hash."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack

from game_rules import Rules, SignInState
from game_rules.farm import Daily, Farm
from game_rules.growth_state import GrowthState
from game_rules.notify import NotifyState
from server.pipeline import Snapshot


def pack(wire: Mapping[str, object]) -> bytes:
    packed: bytes = msgpack.packb(wire)
    return packed


def signin_of(snapshot: Snapshot) -> SignInState:
    wire = snapshot.component("signin")
    return SignInState() if wire is None else SignInState.from_wire(wire)


def farm_of(snapshot: Snapshot, rules: Rules) -> Farm:
    wire = snapshot.component("farm")
    plots = rules.farm.plots
    return Farm.empty(plots) if wire is None else Farm.from_wire(wire, plots=plots)


def daily_of(snapshot: Snapshot) -> Daily:
    wire = snapshot.component("daily")
    return Daily() if wire is None else Daily.from_wire(wire)


def notify_of(snapshot: Snapshot) -> NotifyState:
    wire = snapshot.component("notify")
    return NotifyState() if wire is None else NotifyState.from_wire(wire)


def growth_of(snapshot: Snapshot) -> GrowthState:
    return growth_from(snapshot.fields.get(b"growth"))


def growth_from(raw: bytes | None) -> GrowthState:
    """The `growth` field of a state hash as read alone (HGET), or none yet."""
    return GrowthState() if raw is None else GrowthState.from_wire(msgpack.unpackb(raw, raw=False))


def snapshot_of(state: dict[bytes, bytes], balance: Any = 0) -> Snapshot:
    return Snapshot(int(state.get(b"ver", 0)), state, int(balance or 0))
