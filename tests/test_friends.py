"""Friend edges: every transition from every pair of edges, limits, the steal cooldown."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest

from game_rules import Edge, Friendship, Rules, RuleViolation, is_friend_for_steal, parse_rules
from game_rules.friends import (
    Edges,
    accept,
    block,
    decline,
    friendship,
    remove,
    request,
    unblock,
)

RULES = parse_rules(
    'version = "t"\n[signin]\nrewards = [1]\n[farm]\nfriends_max = 3\nblocks_max = 2\n'
)
T = 1_000
NOW = 5_000
F = Edge("friends", T)
OUT = Edge("outgoing", T)
IN = Edge("incoming", T)
BLK = Edge("blocked", T)

# Every pair of edges that can exist: (mine, theirs).
STRANGERS = (None, None)
FRIENDS = (F, F)
ASKED = (OUT, IN)  # I asked them
ASKED_ME = (IN, OUT)  # they asked me
I_BLOCKED = (BLK, None)
THEY_BLOCKED = (None, BLK)
BOTH_BLOCKED = (BLK, BLK)
PAIRS = [STRANGERS, FRIENDS, ASKED, ASKED_ME, I_BLOCKED, THEY_BLOCKED, BOTH_BLOCKED]

NEW_FRIENDS = Edges(Edge("friends", NOW), Edge("friends", NOW))
Pair = tuple[Edge | None, Edge | None]


def outcome(call: object) -> Edges | str:
    assert callable(call)
    try:
        result = call()
    except RuleViolation as error:
        return error.code
    assert isinstance(result, Edges)
    return result


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        (STRANGERS, Edges(Edge("outgoing", NOW), Edge("incoming", NOW))),
        (FRIENDS, "ALREADY_FRIENDS"),
        (ASKED, Edges(OUT, IN)),  # asking again changes nothing
        (ASKED_ME, NEW_FRIENDS),  # they asked me first: friends at once
        (I_BLOCKED, "BLOCKED"),
        (THEY_BLOCKED, "BLOCKED"),
        (BOTH_BLOCKED, "BLOCKED"),
    ],
)
def test_request_table(pair: Pair, expected: Edges | str) -> None:
    assert outcome(lambda: request(pair[0], pair[1], NOW, 0, 0, RULES)) == expected


def test_request_blocked_does_not_say_which_side() -> None:
    messages = set()
    for pair in (I_BLOCKED, THEY_BLOCKED):
        with pytest.raises(RuleViolation) as caught:
            request(pair[0], pair[1], NOW, 0, 0, RULES)
        messages.add(caught.value.message)
    assert len(messages) == 1


@pytest.mark.parametrize(
    ("pair", "my_count", "their_count", "expected"),
    [
        (STRANGERS, 2, 2, Edges(Edge("outgoing", NOW), Edge("incoming", NOW))),
        (STRANGERS, 3, 0, "FRIENDS_LIMIT"),
        (STRANGERS, 0, 3, "FRIENDS_LIMIT"),  # a request takes a place on their side too
        (ASKED, 3, 3, Edges(OUT, IN)),  # asking again takes no new place
        (ASKED_ME, 3, 3, NEW_FRIENDS),  # their request holds both places already
        (FRIENDS, 3, 3, "ALREADY_FRIENDS"),
    ],
)
def test_request_friends_limit_at_the_edge(
    pair: Pair, my_count: int, their_count: int, expected: Edges | str
) -> None:
    assert outcome(lambda: request(pair[0], pair[1], NOW, my_count, their_count, RULES)) == expected


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        (ASKED_ME, NEW_FRIENDS),  # no limit: the request took its places when it was sent
        (STRANGERS, "NO_REQUEST"),
        (ASKED, "NO_REQUEST"),  # my own request is not mine to accept
        (FRIENDS, "ALREADY_FRIENDS"),
        (I_BLOCKED, "NO_REQUEST"),
        (THEY_BLOCKED, "NO_REQUEST"),
        (BOTH_BLOCKED, "NO_REQUEST"),
    ],
)
def test_accept_table(pair: Pair, expected: Edges | str) -> None:
    assert outcome(lambda: accept(pair[0], pair[1], NOW)) == expected


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        (ASKED_ME, Edges(None, None)),
        (ASKED, Edges(None, None)),  # withdraws my request
        (STRANGERS, "NO_REQUEST"),
        (FRIENDS, "NO_REQUEST"),
        (I_BLOCKED, "NO_REQUEST"),
        (THEY_BLOCKED, "NO_REQUEST"),
        (BOTH_BLOCKED, "NO_REQUEST"),
    ],
)
def test_decline_table(pair: Pair, expected: Edges | str) -> None:
    assert outcome(lambda: decline(pair[0], pair[1])) == expected


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        (FRIENDS, Edges(None, None)),
        (STRANGERS, "NOT_FRIENDS"),
        (ASKED, "NOT_FRIENDS"),
        (ASKED_ME, "NOT_FRIENDS"),
        (I_BLOCKED, "NOT_FRIENDS"),
        (THEY_BLOCKED, "NOT_FRIENDS"),
        (BOTH_BLOCKED, "NOT_FRIENDS"),
    ],
)
def test_remove_table(pair: Pair, expected: Edges | str) -> None:
    assert outcome(lambda: remove(pair[0], pair[1])) == expected


NEW_BLOCK = Edge("blocked", NOW)


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        (STRANGERS, Edges(NEW_BLOCK, None)),
        (FRIENDS, Edges(NEW_BLOCK, None)),  # ends the friendship
        (ASKED, Edges(NEW_BLOCK, None)),
        (ASKED_ME, Edges(NEW_BLOCK, None)),
        (I_BLOCKED, Edges(BLK, None)),  # again: keeps the first since_ms
        (THEY_BLOCKED, Edges(NEW_BLOCK, BLK)),  # their block stays
        (BOTH_BLOCKED, Edges(BLK, BLK)),
    ],
)
def test_block_table(pair: Pair, expected: Edges | str) -> None:
    assert outcome(lambda: block(pair[0], pair[1], NOW, 0, RULES)) == expected


@pytest.mark.parametrize(
    ("pair", "my_blocks", "expected"),
    [
        (STRANGERS, 1, Edges(NEW_BLOCK, None)),
        (STRANGERS, 2, "BLOCKS_LIMIT"),
        (FRIENDS, 2, "BLOCKS_LIMIT"),  # the friendship stays
        (THEY_BLOCKED, 2, "BLOCKS_LIMIT"),
        (I_BLOCKED, 2, Edges(BLK, None)),  # blocking again takes no new place
        (BOTH_BLOCKED, 5, Edges(BLK, BLK)),  # nor does a block kept past a lowered limit
    ],
)
def test_block_limit_at_the_edge(pair: Pair, my_blocks: int, expected: Edges | str) -> None:
    assert outcome(lambda: block(pair[0], pair[1], NOW, my_blocks, RULES)) == expected


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        (I_BLOCKED, Edges(None, None)),
        (BOTH_BLOCKED, Edges(None, BLK)),  # their block stays
        (STRANGERS, "NOT_BLOCKED"),
        (FRIENDS, "NOT_BLOCKED"),
        (ASKED, "NOT_BLOCKED"),
        (ASKED_ME, "NOT_BLOCKED"),
        (THEY_BLOCKED, "NOT_BLOCKED"),
    ],
)
def test_unblock_table(pair: Pair, expected: Edges | str) -> None:
    assert outcome(lambda: unblock(pair[0], pair[1])) == expected


@pytest.mark.parametrize(
    "pair",
    [(F, None), (None, F), (OUT, None), (IN, IN), (OUT, OUT), (F, IN), (BLK, F), (F, BLK)],
)
def test_every_transition_refuses_inconsistent_pair(pair: Pair) -> None:
    calls = [
        lambda: request(pair[0], pair[1], NOW, 0, 0, RULES),
        lambda: accept(pair[0], pair[1], NOW),
        lambda: decline(pair[0], pair[1]),
        lambda: remove(pair[0], pair[1]),
        lambda: block(pair[0], pair[1], NOW, 0, RULES),
        lambda: unblock(pair[0], pair[1]),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="inconsistent"):
            call()


@pytest.mark.parametrize("pair", PAIRS)
def test_every_transition_keeps_pairs_consistent(pair: Pair) -> None:
    calls = [
        lambda: request(pair[0], pair[1], NOW, 0, 0, RULES),
        lambda: accept(pair[0], pair[1], NOW),
        lambda: decline(pair[0], pair[1]),
        lambda: remove(pair[0], pair[1]),
        lambda: block(pair[0], pair[1], NOW, 0, RULES),
        lambda: unblock(pair[0], pair[1]),
    ]
    for call in calls:
        result = outcome(call)
        if isinstance(result, Edges):
            mine, theirs = result
            # Valid pairs are closed under the transitions, seen from either side: a
            # corrupt pair would raise ValueError here instead of a rule code or a result.
            for side in ((mine, theirs), (theirs, mine)):
                with contextlib.suppress(RuleViolation):
                    decline(*side)


def test_request_then_accept_from_the_other_side() -> None:
    mine, theirs = request(None, None, 10, 0, 0, RULES)
    their_side = accept(theirs, mine, 20)
    assert their_side == Edges(Edge("friends", 20), Edge("friends", 20))


@pytest.mark.parametrize(
    ("edge", "now_ms", "expected"),
    [
        (Edge("friends", 0), 86_400_000 - 1, False),
        (Edge("friends", 0), 86_400_000, True),
        (Edge("friends", 0), 86_400_001, True),
        (Edge("outgoing", 0), 10**12, False),
        (Edge("blocked", 0), 10**12, False),
        (None, 10**12, False),
    ],
)
def test_is_friend_for_steal_cooldown_at_the_edge(
    edge: Edge | None, now_ms: int, expected: bool
) -> None:
    assert is_friend_for_steal(edge, now_ms, RULES) is expected


def test_is_friend_for_steal_follows_rules_cooldown() -> None:
    rules: Rules = dataclasses.replace(
        RULES, farm=dataclasses.replace(RULES.farm, friendship_cooldown_ms=0)
    )
    assert is_friend_for_steal(Edge("friends", 5), 5, rules)


@pytest.mark.parametrize(
    ("edge", "expected"),
    [(F, Friendship(T)), (OUT, None), (IN, None), (BLK, None), (None, None)],
)
def test_friendship_from_edge(edge: Edge | None, expected: Friendship | None) -> None:
    assert friendship(edge) == expected


def test_edge_wire_round_trip() -> None:
    for edge in (F, OUT, IN, BLK):
        assert Edge.from_wire(edge.to_wire()) == edge
    assert F.to_wire() == {"s": "friends", "t": T}


@pytest.mark.parametrize(
    "data",
    [
        None,
        {},
        {"s": "friend", "t": 1},
        {"s": "friends"},
        {"s": "friends", "t": "1"},
        {"s": "friends", "t": True},
        {"s": "friends", "t": 1, "x": 0},
    ],
)
def test_edge_from_wire_malformed_is_value_error(data: object) -> None:
    with pytest.raises(ValueError):
        Edge.from_wire(data)


@pytest.mark.parametrize(
    ("mine", "theirs", "expected"),
    [
        (Edge("friends", 1), None, (None, None)),
        (None, Edge("incoming", 1), (None, None)),
        (Edge("outgoing", 1), Edge("friends", 1), (None, None)),
        (Edge("blocked", 1), Edge("friends", 1), (Edge("blocked", 1), None)),
        (Edge("friends", 1), Edge("blocked", 2), (None, Edge("blocked", 2))),
        (Edge("friends", 1), Edge("friends", 2), (Edge("friends", 1), Edge("friends", 2))),
        (None, None, (None, None)),
    ],
)
def test_repaired_reads_half_pairs_as_strangers_but_keeps_blocks(
    mine: Edge | None, theirs: Edge | None, expected: tuple[Edge | None, Edge | None]
) -> None:
    from game_rules.friends import repaired

    assert tuple(repaired(mine, theirs)) == expected
