"""game_rules/ids.py: transfer ids unambiguous, bounded, and in the old form where it was."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from game_rules.ids import TRANSFER_ID_BYTES_MAX, reversal_id, transfer_id


def test_transfer_ids_keep_the_old_form_when_no_field_has_the_separator() -> None:
    assert transfer_id("refund", "o1", "r1") == "refund:o1:r1"
    assert transfer_id("order", "o#1", "reward") == "order:o#1:reward"
    assert transfer_id("exchange", "china_mobile", "t1") == "exchange:china_mobile:t1"
    assert reversal_id("grant:g1") == "reverse:grant:g1"


def test_transfer_ids_with_the_separator_or_too_long_are_digests() -> None:
    assert transfer_id("refund", "A:B", "C") != transfer_id("refund", "A", "B:C")
    assert transfer_id("refund", "A:B", "C").startswith("refund#")
    assert transfer_id("review", "R:debt").startswith("review#")
    long = transfer_id("refund", "o" * 128, "r" * 128)
    assert long.startswith("refund#") and len(long) == len("refund#") + 64
    fits = transfer_id("refund", "o" * 96, "r" * 96)
    assert fits == f"refund:{'o' * 96}:{'r' * 96}" and len(fits) == TRANSFER_ID_BYTES_MAX
    assert reversal_id("x" * 193).startswith("reverse#")  # 8 + 193 > 200
    assert reversal_id("redeem:o:debt").startswith("reverse#")  # an old debt id's shape


@given(
    st.sampled_from(["order", "refund", "review"]),
    st.lists(st.text(st.sampled_from("ab:#"), min_size=1, max_size=6), min_size=1, max_size=3),
    st.lists(st.text(st.sampled_from("ab:#"), min_size=1, max_size=6), min_size=1, max_size=3),
)
def test_transfer_ids_of_different_events_differ(
    kind: str, one: list[str], other: list[str]
) -> None:
    if one != other:
        assert transfer_id(kind, *one) != transfer_id(kind, *other)
