"""Coins and money: order and review rewards, refund clawback, checkout quotes and reserves,
partner points exchange, expiry warnings.

Money is integer fen (1 yuan = 100 fen), coins are integer coins; nothing here is a float.
Every division states its rounding: what the player gains rounds down (floor), what is
taken back on a refund rounds up (ceil), so rounding never leaves the player coins that
the money no longer pays for. Checks run in the order each docstring lists; the first
failing check raises its RuleViolation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from game_rules.calendar import business_day, days_until, expiry_batch
from game_rules.errors import RuleViolation
from game_rules.ids import ID_RE, order_reward_id, transfer_id
from game_rules.rules import PAID_FEN_MAX, Rules
from game_rules.signin import Credit

ORDER_SOURCE = "order"
REVIEW_SOURCE = "review"
EXCHANGE_SOURCE = "exchange"
ORDER_ITEMS_MAX = 200
FEN_PER_YUAN = 100
PCT = 100
RewardItem = tuple[str, int, int]  # (item_id, paid_fen, coins) as order_reward paid it
Refund = tuple[str, int]  # (item_id, refunded_fen)


@dataclass(frozen=True, slots=True)
class Item:
    """One line of an order: what the player actually paid for it, in fen, and the shop's
    category of the item ("" none), which a campaign's category bonus matches."""

    item_id: str
    paid_fen: int
    category: str = ""


@dataclass(frozen=True, slots=True)
class Reward:
    """Coins an order earns. per_item has one (item_id, coins) per item, in order, also
    when the order earns nothing; keep it (with paid_fen) for refund_clawback."""

    coins: int
    per_item: tuple[tuple[str, int], ...]
    credit: Credit | None  # None when coins == 0


@dataclass(frozen=True, slots=True)
class Quote:
    """What coins can pay of an order: at most coins_max coins, worth yuan_value_fen."""

    coins_max: int
    yuan_value_fen: int


# --- earning ------------------------------------------------------------------------------


def order_reward(
    rules: Rules, items: Sequence[Item], order_id: str, player_id: str, now_ms: int
) -> Reward:
    """Shopping feedback for a paid order.

    Checks, in order: order_id (BAD_ORDER), 1..ORDER_ITEMS_MAX items (BAD_ORDER), each
    item id well-formed and unique and each paid_fen an integer in 0..PAID_FEN_MAX
    (BAD_ORDER). An order whose total paid_fen is below paid_fen_min earns 0 coins: no
    credit, not an error.

    Per item: min(item_coins_max, floor(paid_fen * reward_pct / 100 * coins_per_yuan / 100))
    computed as paid_fen * reward_pct * coins_per_yuan // 10_000. Floor: the player gains
    whole coins only, never a coin the percentage does not cover. The cap applies per item,
    and the order's coins are the sum of the items' coins.
    """
    if not player_id:
        raise ValueError("player_id must be non-empty")
    _check_id(order_id, "BAD_ORDER", "order id")
    if not 1 <= len(items) <= ORDER_ITEMS_MAX:
        raise RuleViolation(
            "BAD_ORDER", f"an order has 1..{ORDER_ITEMS_MAX} items, got {len(items)}"
        )
    seen: set[str] = set()
    for item in items:
        _check_id(item.item_id, "BAD_ORDER", "item id")
        if item.item_id in seen:
            raise RuleViolation("BAD_ORDER", f"item {item.item_id!r} appears twice")
        seen.add(item.item_id)
        _check_fen(item.paid_fen, 0, "BAD_ORDER", f"item {item.item_id!r} paid_fen")

    reward = rules.order_reward
    earns = sum(item.paid_fen for item in items) >= reward.paid_fen_min
    scale = reward.reward_pct * rules.checkout.coins_per_yuan
    per_item = tuple(
        (item.item_id, min(reward.item_coins_max, item.paid_fen * scale // (PCT * FEN_PER_YUAN)))
        if earns
        else (item.item_id, 0)
        for item in items
    )
    coins = sum(item_coins for _, item_coins in per_item)
    credit = None
    if coins > 0:
        credit = Credit(order_reward_id(order_id), ORDER_SOURCE, coins, _batch(rules, now_ms))
    return Reward(coins, per_item, credit)


def review_reward(rules: Rules, review_id: str, order_paid_fen: int, now_ms: int) -> Credit:
    """Coins for a review: the last tier whose paid_fen_at_least <= order_paid_fen (the
    first tier starts at 0, so one always applies; tier coins are >= 1).

    Checks, in order: review_id (BAD_REVIEW), order_paid_fen in 0..PAID_FEN_MAX (BAD_REVIEW).
    """
    _check_id(review_id, "BAD_REVIEW", "review id")
    _check_fen(order_paid_fen, 0, "BAD_REVIEW", "order_paid_fen")
    coins = next(
        coins
        for at_least_fen, coins in reversed(rules.review_reward.tiers)
        if order_paid_fen >= at_least_fen
    )
    return Credit(transfer_id("review", review_id), REVIEW_SOURCE, coins, _batch(rules, now_ms))


def exchange(rules: Rules, partner: str, points: int, txn_id: str, now_ms: int) -> Credit:
    """Partner points into coins: floor(points * num / den). Floor: the player gains whole
    coins only (3 points at 3/2 make 4 coins, 1 point makes 1).

    Checks, in order: partner known (UNKNOWN_PARTNER), txn_id (BAD_TXN), points an integer
    >= 1 (BAD_POINTS), points <= points_per_exchange_max (POINTS_OVER_LIMIT), at least one
    coin (POINTS_TOO_FEW: only a ratio below 1 can get there). The number of exchanges is
    not limited; txn_id makes a retry of one exchange pay once.
    """
    terms = rules.exchange.partners.get(partner)
    if terms is None:
        raise RuleViolation("UNKNOWN_PARTNER", f"no exchange partner {partner!r}")
    _check_id(txn_id, "BAD_TXN", "transaction id")
    if isinstance(points, bool) or not isinstance(points, int) or points < 1:
        raise RuleViolation("BAD_POINTS", f"points must be an integer >= 1, got {points!r}")
    if points > terms.points_per_exchange_max:
        raise RuleViolation(
            "POINTS_OVER_LIMIT",
            f"at most {terms.points_per_exchange_max} points per exchange, got {points}",
        )
    coins = points * terms.coins_per_point_num // terms.coins_per_point_den
    if coins < 1:
        raise RuleViolation("POINTS_TOO_FEW", f"{points} points make no whole coin")
    credit_id = transfer_id("exchange", partner, txn_id)
    return Credit(credit_id, EXCHANGE_SOURCE, coins, _batch(rules, now_ms))


# --- refunds ------------------------------------------------------------------------------


def refund_clawback(reward_items: Sequence[RewardItem], refunds: Sequence[Refund]) -> int:
    """Coins to take back for `refunds`, all refunds of the order so far (an item may
    appear several times; its refunds add up).

    Per item with cumulative refunded_fen R of paid_fen P that earned C coins:
    ceil(C * R / P), capped at C (R == P takes exactly C; P == 0 can only be refunded in
    full). Ceil: the player never keeps a coin for money that was returned; refunding a
    single fen of an item that earned coins takes one coin.

    Checks: reward_items well-formed (ValueError: they are our own records); each refund's
    item known and refunded_fen an integer >= 0 (BAD_REFUND); an item's refunds add up to
    at most its paid_fen (BAD_REFUND).

    Because the result grows with R, the coins to take for one more refund are
    refund_clawback(items, earlier + new) - refund_clawback(items, earlier), see
    clawback_step; the steps add up to at most the reward and to exactly the reward once
    everything is refunded.
    """
    earned: dict[str, tuple[int, int]] = {}
    for item_id, paid_fen, coins in reward_items:
        if item_id in earned:
            raise ValueError(f"reward item {item_id!r} appears twice")
        if not 0 <= paid_fen <= PAID_FEN_MAX or coins < 0:
            raise ValueError(f"reward item {item_id!r}: bad paid_fen {paid_fen} or coins {coins}")
        earned[item_id] = (paid_fen, coins)

    refunded: dict[str, int] = {}
    for item_id, refunded_fen in refunds:
        if item_id not in earned:
            raise RuleViolation("BAD_REFUND", f"item {item_id!r} is not in the order")
        _check_fen(refunded_fen, 0, "BAD_REFUND", f"item {item_id!r} refunded_fen")
        total_fen = refunded.get(item_id, 0) + refunded_fen
        paid_fen = earned[item_id][0]
        if total_fen > paid_fen:
            raise RuleViolation(
                "BAD_REFUND",
                f"item {item_id!r}: refunds of {total_fen} fen exceed the {paid_fen} fen paid",
            )
        refunded[item_id] = total_fen

    claw = 0
    for item_id, refunded_fen in refunded.items():
        paid_fen, coins = earned[item_id]
        if refunded_fen == paid_fen:
            claw += coins
        else:  # 0 <= refunded_fen < paid_fen, so paid_fen > 0
            claw += min(coins, -(-coins * refunded_fen // paid_fen))  # ceil
    return claw


def clawback_step(
    reward_items: Sequence[RewardItem], earlier: Sequence[Refund], new: Sequence[Refund]
) -> int:
    """Coins to take back for the refunds `new`, given the refunds `earlier` of the same
    order were already clawed back. Same checks as refund_clawback."""
    return refund_clawback(reward_items, [*earlier, *new]) - refund_clawback(reward_items, earlier)


def clawback_split(claw_coins: int, available_coins: int) -> tuple[int, int]:
    """(taken, debt): take what the player has, the rest becomes debt that later credits
    repay (see debt_repayment). A balance never goes negative."""
    if claw_coins < 0 or available_coins < 0:
        raise ValueError(f"coins must be >= 0, got {claw_coins} and {available_coins}")
    taken = min(claw_coins, available_coins)
    return taken, claw_coins - taken


def refund_net(claw_coins: int, earned_coins: int, taken_back_coins: int) -> int:
    """What a refund takes when refunds and an operator's reversal already took back
    `taken_back_coins` of an order's `earned_coins`: min(claw, earned - taken back), never
    below 0. An order's reward is taken back once, whoever takes it: without a reversal
    the refunds' steps add up to at most the reward, so this is the step itself."""
    if min(claw_coins, earned_coins, taken_back_coins) < 0:
        raise ValueError(
            f"coins must be >= 0, got {claw_coins}, {earned_coins}, {taken_back_coins}"
        )
    return max(0, min(claw_coins, earned_coins - taken_back_coins))


def debt_repayment(debt: int, credit_coins: int) -> int:
    """How much of a new credit repays debt first: min(debt, credit_coins)."""
    if debt < 0 or credit_coins < 0:
        raise ValueError(f"coins must be >= 0, got {debt} and {credit_coins}")
    return min(debt, credit_coins)


# --- checkout -----------------------------------------------------------------------------


def order_coins_max(rules: Rules, order_fen: int) -> int:
    """The most coins an order of order_fen may take, whatever the balance:
    floor(order_fen * order_share_max_pct / 100 * coins_per_yuan / 100) computed as
    order_fen * pct * coins_per_yuan // 10_000. Floor: coins never pay more than the share.

    Checks: order_fen an integer in 1..PAID_FEN_MAX (BAD_ORDER).
    """
    _check_fen(order_fen, 1, "BAD_ORDER", "order_fen")
    checkout = rules.checkout
    return order_fen * checkout.order_share_max_pct * checkout.coins_per_yuan // (PCT * PCT)


def coins_value_fen(rules: Rules, coins: int) -> int:
    """What `coins` pay at checkout, in fen: floor(coins * 100 / coins_per_yuan). Floor:
    only whole fen can be taken off a price (exact at the default 100 coins = 1 yuan)."""
    if coins < 0:
        raise ValueError(f"coins must be >= 0, got {coins}")
    return coins * FEN_PER_YUAN // rules.checkout.coins_per_yuan


def quote(rules: Rules, order_fen: int, balance_coins: int) -> Quote:
    """What the player's coins can pay of an order: coins_max = min(balance_coins,
    order_coins_max), worth coins_value_fen(coins_max).

    Checks: order_fen an integer in 1..PAID_FEN_MAX (BAD_ORDER).
    """
    if balance_coins < 0:
        raise ValueError(f"balance_coins must be >= 0, got {balance_coins}")
    coins_max = min(balance_coins, order_coins_max(rules, order_fen))
    return Quote(coins_max, coins_value_fen(rules, coins_max))


def check_reserve(rules: Rules, order_fen: int, coins: int, available_coins: int) -> None:
    """Refuse a checkout reserve the rules do not allow.

    Checks, in order: order_fen in 1..PAID_FEN_MAX (BAD_ORDER), coins an integer >= 1
    (BAD_COINS), coins <= order_coins_max (COINS_OVER_CAP), coins <= available_coins
    (INSUFFICIENT_FUNDS). The cap comes before the balance: a client asking for more than
    any balance could pay learns the cap, not that it is poor.
    """
    cap = order_coins_max(rules, order_fen)
    if isinstance(coins, bool) or not isinstance(coins, int) or coins < 1:
        raise RuleViolation("BAD_COINS", f"coins must be an integer >= 1, got {coins!r}")
    if coins > cap:
        raise RuleViolation(
            "COINS_OVER_CAP",
            f"coins may pay at most {rules.checkout.order_share_max_pct}% of the order: "
            f"{cap} coins, asked {coins}",
        )
    if coins > available_coins:
        raise RuleViolation(
            "INSUFFICIENT_FUNDS", f"{available_coins} coins available, asked {coins}"
        )


def hold_expires_ms(rules: Rules, now_ms: int) -> int:
    """When a reserve made at now_ms is voided unless posted."""
    return now_ms + rules.checkout.hold_timeout_ms


# --- expiry -------------------------------------------------------------------------------


def expiring_batches(
    batches: Mapping[date, int], rules: Rules, now_ms: int
) -> list[tuple[date, int, int]]:
    """(batch, coins, days_left) for each batch with coins whose last valid day is
    0..warn_days business days away (0: it expires at the end of today), oldest first."""
    warn_days = rules.expiry.warn_days
    found = []
    for batch, coins in sorted(_with_coins(batches).items()):
        days_left = days_until(batch, now_ms, rules.tz)
        if 0 <= days_left <= warn_days:
            found.append((batch, coins, days_left))
    return found


def expired_batches(
    batches: Mapping[date, int], rules: Rules, now_ms: int
) -> list[tuple[date, int]]:
    """(batch, coins) for each batch with coins whose last valid day is before today in
    the rules' time zone, oldest first: what expiry moves to the expiry sink."""
    today = business_day(now_ms, rules.tz)
    return [
        (batch, coins) for batch, coins in sorted(_with_coins(batches).items()) if batch < today
    ]


# --- helpers ------------------------------------------------------------------------------


def _with_coins(batches: Mapping[date, int]) -> dict[date, int]:
    if any(coins < 0 for coins in batches.values()):
        raise ValueError(f"batch coins must be >= 0, got {dict(batches)!r}")
    return {batch: coins for batch, coins in batches.items() if coins > 0}


def _batch(rules: Rules, now_ms: int) -> date:
    return expiry_batch(business_day(now_ms, rules.tz), rules.expiry)


def _check_id(value: object, code: str, what: str) -> None:
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise RuleViolation(
            code, f"{what} must be 1..128 printable ASCII characters without spaces, got {value!r}"
        )


def _check_fen(value: object, value_min: int, code: str, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RuleViolation(code, f"{what} must be an integer, got {value!r}")
    if not value_min <= value <= PAID_FEN_MAX:
        raise RuleViolation(code, f"{what} must be in {value_min}..{PAID_FEN_MAX}, got {value}")
