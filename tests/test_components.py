"""Rule state read from a player's state hash (server/ops/components.py)."""

from __future__ import annotations

from datetime import date, timedelta

import msgpack
import pytest

from game_rules import SignInState
from server.ops import components
from server.ops.components import SIGNIN_STATES_CACHED_MAX, signin_of
from server.pipeline import snapshot_of_hash


def snapshot_with_signin(raw: bytes | None) -> components.Snapshot:
    fields = {b"ver": b"1"} if raw is None else {b"ver": b"1", b"signin": raw}
    return snapshot_of_hash(fields)


def packed(state: SignInState) -> bytes:
    raw: bytes = msgpack.packb(state.to_wire())
    return raw


def test_signin_of_no_field_is_never_signed_in() -> None:
    assert signin_of(snapshot_with_signin(None)) == SignInState()


def test_signin_of_same_bytes_same_state_and_each_bytes_its_own() -> None:
    # Same length, different days and streaks: a memo must tell them apart.
    first = SignInState(date(2026, 12, 1), 3)
    second = SignInState(date(2026, 12, 2), 4)
    for _ in range(3):
        assert signin_of(snapshot_with_signin(packed(first))) == first
        assert signin_of(snapshot_with_signin(packed(second))) == second
    assert len(packed(first)) == len(packed(second))


@pytest.mark.parametrize(
    "wire",
    [
        {"d": "2026-12-01", "s": 0},  # a sign-in day with no streak
        {"d": "20261201", "s": 1},  # not the form to_wire writes
        {"d": None, "s": 2},
        {"s": 1},
    ],
)
def test_signin_of_bad_stored_state_raises_every_time(wire: dict[str, object]) -> None:
    raw: bytes = msgpack.packb(wire)
    for _ in range(2):  # a refusal is not remembered as a state
        with pytest.raises(ValueError):
            signin_of(snapshot_with_signin(raw))


def test_signin_of_memo_stays_bounded() -> None:
    start = date(2000, 1, 1)
    states = [
        SignInState(start + timedelta(days=n), 1) for n in range(SIGNIN_STATES_CACHED_MAX + 10)
    ]
    for state in states:
        assert signin_of(snapshot_with_signin(packed(state))) == state
    assert 0 < len(components._signin_states) <= SIGNIN_STATES_CACHED_MAX
    assert signin_of(snapshot_with_signin(packed(states[0]))) == states[0]
