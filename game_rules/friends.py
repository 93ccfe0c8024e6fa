"""Friend edges: request, accept, decline, remove, block, unblock.

A pair of players has two edges, one stored on each side. Every transition takes both
(mine, theirs), None meaning no edge, and returns both, so the shell writes the pair at
once. The pairs that can exist:

    mine       theirs
    None       None        strangers
    friends    friends
    outgoing   incoming    I asked them
    incoming   outgoing    they asked me
    blocked    None        I blocked them
    None       blocked     they blocked me
    blocked    blocked     both blocked

Any other pair is a corrupt store: ValueError, not a RuleViolation (the shell reads pairs
through `repaired`, so a half-written pair never gets that far).

Limits: a player's relations (friends, and requests sent or received) are at most
farm.friends_max, their blocks at most farm.blocks_max. A request takes a relation on both
sides, so accepting it takes none; a block takes a block only on the blocker's side. The
shell passes the counts it read; the store checks them again as it writes each edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from game_rules.errors import RuleViolation
from game_rules.farm import Friendship
from game_rules.rules import Rules

Status = Literal["friends", "outgoing", "incoming", "blocked"]
STATUSES: tuple[Status, ...] = ("friends", "outgoing", "incoming", "blocked")
_VALID_PAIRS = {
    (None, None),
    ("friends", "friends"),
    ("outgoing", "incoming"),
    ("incoming", "outgoing"),
    ("blocked", None),
    (None, "blocked"),
    ("blocked", "blocked"),
}


@dataclass(frozen=True, slots=True)
class Edge:
    status: Status
    since_ms: int  # when this status began

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"edge status must be one of {STATUSES}, got {self.status!r}")
        if isinstance(self.since_ms, bool) or not isinstance(self.since_ms, int):
            raise ValueError(f"edge since_ms must be an integer, got {self.since_ms!r}")

    def to_wire(self) -> dict[str, object]:
        return {"s": self.status, "t": self.since_ms}

    @classmethod
    def from_wire(cls, data: object) -> Edge:
        """Inverse of to_wire; anything else raises ValueError (the store is not trusted)."""
        if not isinstance(data, dict) or set(data) != {"s", "t"}:
            raise ValueError(f"edge must be a map with keys 's' and 't', got {data!r}")
        status = data["s"]
        for known in STATUSES:
            if status == known:
                return cls(known, data["t"])
        raise ValueError(f"edge status must be one of {STATUSES}, got {status!r}")


class Edges(NamedTuple):
    mine: Edge | None
    theirs: Edge | None


def request(
    mine: Edge | None,
    theirs: Edge | None,
    now_ms: int,
    my_count: int,
    their_count: int,
    rules: Rules,
) -> Edges:
    """I ask them to be friends. If they already asked me, we are friends at once. Asking
    again changes nothing. my_count and their_count are relations (see the module).
    Checks in order: BLOCKED (either side; the message does not say which),
    ALREADY_FRIENDS, FRIENDS_LIMIT (mine, then theirs: a new request takes a place on
    both sides)."""
    pair = _checked(mine, theirs)
    if "blocked" in pair:
        raise RuleViolation("BLOCKED", "you cannot send this player a friend request")
    if pair == ("friends", "friends"):
        raise RuleViolation("ALREADY_FRIENDS", "you are already friends")
    if pair == ("outgoing", "incoming"):
        return Edges(mine, theirs)
    if pair == ("incoming", "outgoing"):
        return _befriend(now_ms)
    _check_limit(my_count, rules, "you have")
    _check_limit(their_count, rules, "this player has")
    return Edges(Edge("outgoing", now_ms), Edge("incoming", now_ms))


def accept(mine: Edge | None, theirs: Edge | None, now_ms: int) -> Edges:
    """I accept their request; its places were taken when it was sent, so no limit is
    checked. Checks in order: ALREADY_FRIENDS, NO_REQUEST (including a block on either
    side)."""
    pair = _checked(mine, theirs)
    if pair == ("friends", "friends"):
        raise RuleViolation("ALREADY_FRIENDS", "you are already friends")
    if pair != ("incoming", "outgoing"):
        raise RuleViolation("NO_REQUEST", "this player has not asked to be your friend")
    return _befriend(now_ms)


def decline(mine: Edge | None, theirs: Edge | None) -> Edges:
    """I decline their request, or withdraw mine. NO_REQUEST when neither is pending."""
    pair = _checked(mine, theirs)
    if pair not in {("incoming", "outgoing"), ("outgoing", "incoming")}:
        raise RuleViolation("NO_REQUEST", "there is no pending friend request")
    return Edges(None, None)


def remove(mine: Edge | None, theirs: Edge | None) -> Edges:
    """I end our friendship. NOT_FRIENDS when we are not friends."""
    if _checked(mine, theirs) != ("friends", "friends"):
        raise RuleViolation("NOT_FRIENDS", "you are not friends")
    return Edges(None, None)


def block(
    mine: Edge | None, theirs: Edge | None, now_ms: int, my_blocks: int, rules: Rules
) -> Edges:
    """I block them: any friendship or request ends; their block of me, if any, stays.
    Blocking again changes nothing (the block keeps its first since_ms). BLOCKS_LIMIT when
    a new block would pass blocks_max (my_blocks: the blocks I have)."""
    pair = _checked(mine, theirs)
    if pair[0] == "blocked":
        return Edges(mine, theirs)
    if my_blocks >= rules.farm.blocks_max:
        raise RuleViolation("BLOCKS_LIMIT", f"you have blocked {rules.farm.blocks_max} players")
    return Edges(Edge("blocked", now_ms), theirs if pair[1] == "blocked" else None)


def unblock(mine: Edge | None, theirs: Edge | None) -> Edges:
    """I lift my block; their block of me, if any, stays. NOT_BLOCKED when I had none."""
    if _checked(mine, theirs)[0] != "blocked":
        raise RuleViolation("NOT_BLOCKED", "you have not blocked this player")
    return Edges(None, theirs)


def friendship(edge: Edge | None) -> Friendship | None:
    """The friendship the farm rules take, from my edge: None unless we are friends."""
    if edge is None or edge.status != "friends":
        return None
    return Friendship(edge.since_ms)


def is_friend_for_steal(edge: Edge | None, now_ms: int, rules: Rules) -> bool:
    """Friends for at least friendship_cooldown_ms (the same test `steal` makes)."""
    if edge is None or edge.status != "friends":
        return False
    return now_ms - edge.since_ms >= rules.farm.friendship_cooldown_ms


def _befriend(now_ms: int) -> Edges:
    return Edges(Edge("friends", now_ms), Edge("friends", now_ms))


def _check_limit(count: int, rules: Rules, who: str) -> None:
    if count >= rules.farm.friends_max:
        limit = rules.farm.friends_max
        raise RuleViolation("FRIENDS_LIMIT", f"{who} {limit} friends and requests already")


def _checked(mine: Edge | None, theirs: Edge | None) -> tuple[Status | None, Status | None]:
    pair = (
        None if mine is None else mine.status,
        None if theirs is None else theirs.status,
    )
    if pair not in _VALID_PAIRS:
        raise ValueError(f"inconsistent friend edges: mine {mine!r}, theirs {theirs!r}")
    return pair


def repaired(mine: Edge | None, theirs: Edge | None) -> Edges:
    """A pair as the rules can read it. The two edges live in two players' slots and are
    written one after the other, so a crash can leave half a pair (mine "friends", theirs
    missing). Such a pair reads as strangers, except that a block on either side stands:
    nobody is befriended or unblocked by a crash."""
    statuses = (None if mine is None else mine.status, None if theirs is None else theirs.status)
    if statuses in _VALID_PAIRS:
        return Edges(mine, theirs)
    keep_mine = mine if mine is not None and mine.status == "blocked" else None
    keep_theirs = theirs if theirs is not None and theirs.status == "blocked" else None
    return Edges(keep_mine, keep_theirs)
