"""server/transport/balance_gate.py: which `balance` pushes a socket is sent (no I/O)."""

from __future__ import annotations

from server.protocol import balance_push
from server.transport.balance_gate import BalanceGate


def reply(entry_seq: int | None) -> dict[str, object]:
    result: dict[str, object] = {"balance": 10}
    if entry_seq is not None:
        result["entry_seq"] = entry_seq
    return {"id": 1, "ok": True, "result": result}


def test_a_push_is_sent_once_and_never_one_at_or_below_it() -> None:
    gate = BalanceGate()
    assert gate.admit(balance_push(10, 10, 1), 1)
    assert not gate.admit(balance_push(10, 10, 1), 1)  # the resume's copy
    assert gate.admit(balance_push(15, 5, 2), 2)
    assert not gate.admit(balance_push(10, 10, 1), 1)  # older news


def test_the_requests_own_push_waits_for_the_reply_that_covers_it() -> None:
    gate = BalanceGate()
    gate.answering = True
    assert not gate.admit(balance_push(10, 10, 1), 1)  # came before its reply: held
    assert gate.answered(reply(1)) is None  # the reply says it: dropped
    assert not gate.answering and not gate.admit(balance_push(10, 10, 1), 1)


def test_a_newer_push_that_came_while_answering_goes_out_after_the_reply() -> None:
    gate = BalanceGate()
    gate.answering = True
    assert not gate.admit(balance_push(10, 10, 1), 1)
    newer = balance_push(15, 5, 2)
    assert not gate.admit(newer, 2)
    assert gate.answered(reply(1)) == newer  # the newest held one only
    assert not gate.admit(newer, 2)


def test_a_reply_without_entry_seq_leaves_the_held_push_to_go_out() -> None:
    """An answer that committed nothing, or a reply stored before entry_seq."""
    gate = BalanceGate()
    gate.answering = True
    push = balance_push(10, 10, 1)
    assert not gate.admit(push, 1)
    assert gate.answered(reply(None)) == push
    assert gate.answered({"id": 2, "ok": False, "error": {}}) is None
