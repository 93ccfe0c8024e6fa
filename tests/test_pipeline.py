"""The dispatch table's argument checks and request-id replays (no server needed)."""

from __future__ import annotations

import msgpack
import pytest

from server.pipeline import IntArg, OpError, check_args, replay
from server.protocol import Request

SPEC = {"limit": IntArg(1, 100, 20), "before_seq": IntArg(1, 2**53)}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({}, {"limit": 20, "before_seq": None}),
        ({"limit": 1}, {"limit": 1, "before_seq": None}),
        ({"limit": 100, "before_seq": 7}, {"limit": 100, "before_seq": 7}),
    ],
)
def test_check_args_accepts_and_fills_defaults(
    args: dict[str, object], expected: dict[str, object]
) -> None:
    assert check_args("ledger", SPEC, args) == expected


@pytest.mark.parametrize(
    "args",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": "5"},
        {"limit": True},
        {"limit": 2.0},
        {"before_seq": 0},
        {"page": 1},
    ],
)
def test_check_args_refuses_bad_values(args: dict[str, object]) -> None:
    with pytest.raises(OpError) as err:
        check_args("ledger", SPEC, args)
    assert err.value.code == "BAD_ARGS"


def test_replay_returns_the_stored_result_with_its_balance() -> None:
    cached = b"10:" + msgpack.packb({"op": "sign_in", "result": {"coins": 10}})
    assert replay(Request("r1", "sign_in", {}), cached) == {"coins": 10, "balance": 10}


def test_replay_refuses_an_id_reused_for_another_op() -> None:
    cached = b"0:" + msgpack.packb({"op": "plant", "result": {}})
    with pytest.raises(OpError) as err:
        replay(Request("r1", "sign_in", {}), cached)
    assert err.value.code == "ID_REUSED"
