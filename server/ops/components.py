"""Rule state stored as msgpack components of a player's state hash."""

from __future__ import annotations

from collections.abc import Mapping

import msgpack

from game_rules import Rules, SignInState
from game_rules.farm import Daily, Farm
from game_rules.growth_state import GrowthState
from game_rules.notify import NotifyState
from server.pipeline import Snapshot


def pack(wire: Mapping[str, object]) -> bytes:
    packed: bytes = msgpack.packb(wire)
    return packed


# Decoded `signin` fields by their stored bytes. A day's players share few of them (a date
# and a streak), and a decode (msgpack, date parsing, checks) costs ~2.5 us of every
# steady sign-in; SignInState is frozen, so one instance serves every player holding it.
SIGNIN_STATES_CACHED_MAX = 4096
_signin_states: dict[bytes, SignInState] = {}


def signin_of(snapshot: Snapshot) -> SignInState:
    raw = snapshot.fields.get(b"signin")
    if raw is None:
        return SignInState()
    state = _signin_states.get(raw)
    if state is None:
        state = SignInState.from_wire(msgpack.unpackb(raw, raw=False))
        if len(_signin_states) >= SIGNIN_STATES_CACHED_MAX:
            _signin_states.clear()  # a new day's values replace the old ones
        _signin_states[raw] = state
    return state


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
