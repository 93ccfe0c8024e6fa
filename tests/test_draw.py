"""The lucky draw's pure rules: the documented algorithm, its distribution, the pity
guarantee, the verification of a period, and the rules file's [draw] sections."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from game_rules import RuleViolation
from game_rules.draw import (
    DEFAULT_CLIENT_SEED,
    DrawRecord,
    DrawState,
    PoolState,
    draw,
    draw_digest,
    period_of,
    pick,
    pool_from_wire,
    pool_to_wire,
    roll,
    seed_hash,
    set_client_seed,
)
from game_rules.draw_verify import verify_period
from game_rules.errors import RulesError
from game_rules.rules import POOLS_DEFAULT, PoolRules, Rules, parse_rules
from tests.conftest import SHANGHAI, shanghai_ms

DEFAULT_RULES = parse_rules(Path("game_rules/default.toml").read_text(encoding="utf-8"))
GASHAPON = POOLS_DEFAULT["gashapon"]
SEED = hashlib.sha256(b"coin manor worked example").hexdigest()
NOW_MS = shanghai_ms("2026-11-23T09:00:00")
DAY = period_of("daily", SHANGHAI, NOW_MS)

# The chi-square test: every prize of the shipped pool, df = prizes - 1 = 6. The critical
# value of chi-square with 6 degrees of freedom at significance 0.001 is 22.458. The
# draws are deterministic (fixed seed, players and nonces), so the test cannot flake.
CHI2_DRAWS = 200_000
CHI2_CRITICAL_DF6_P001 = 22.458


def chi_square(counts: dict[str, int], pool: PoolRules, draws: int) -> float:
    total = pool.total_weight
    return sum(
        (counts.get(p.name, 0) - draws * p.weight / total) ** 2 / (draws * p.weight / total)
        for p in pool.prizes.entries
    )


def counts_of(server_seed: str, pool: PoolRules, draws: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    players = 1000
    for i in range(draws):
        rolled = roll(server_seed, f"p{i % players}", "cs", i // players, pool.total_weight)
        name = pick(pool.prizes, rolled.number).name
        counts[name] = counts.get(name, 0) + 1
    return counts


def test_worked_example_of_the_docs() -> None:
    # docs/points-center.md, "The algorithm": the same numbers.
    assert SEED == "056a1746cb6d4c8fa703eb8dce12e4e014b09df5fb1a40fff102513819a614c7"
    assert seed_hash(SEED) == "5285e438681bfdd26eea9ad2f687f4c971710bcc6485a73d486e6f4722356eb0"
    digest = draw_digest(SEED, "alice", "lucky-cat", 7, 0)
    assert digest.hex() == "5115c637112e275e5a93f71f0262d5dcfdd067006cceb833e1ea5fb832151648"
    assert int.from_bytes(digest[:4], "big") == 1360381495
    assert GASHAPON.total_weight == 10500
    rolled = roll(SEED, "alice", "lucky-cat", 7, 10500)
    assert (rolled.number, rolled.round, rolled.chunk) == (1495, 0, 0)
    assert pick(GASHAPON.prizes, 1495).name == "ten_coins"


def test_roll_rejects_integers_at_or_above_the_limit() -> None:
    # total = 2**31 + 1: limit = 2**31 + 1, so about half of the integers are rejected and
    # the roll takes a later chunk or round; the number is still in range and reproducible.
    total = 2**31 + 1
    later = 0
    for nonce in range(64):
        rolled = roll(SEED, "bo", "x", nonce, total)
        assert 0 <= rolled.number < total
        digest = draw_digest(SEED, "bo", "x", nonce, rolled.round)
        value = int.from_bytes(digest[rolled.chunk * 4 : rolled.chunk * 4 + 4], "big")
        assert value < total and value == rolled.number
        later += rolled.chunk > 0 or rolled.round > 0
    assert later > 10


def test_pick_by_cumulative_weight_at_the_edges() -> None:
    names = [pick(GASHAPON.prizes, n).name for n in (0, 3999, 4000, 5499, 5500, 10499)]
    assert names == ["ten_coins", "ten_coins", "fifty_coins", "fifty_coins", "jackpot", "thanks"]
    with pytest.raises(ValueError):
        pick(GASHAPON.prizes, 10500)


def test_distribution_matches_the_weights_chi_square() -> None:
    counts = counts_of(SEED, GASHAPON, CHI2_DRAWS)
    statistic = chi_square(counts, GASHAPON, CHI2_DRAWS)
    print(f"chi-square {statistic:.3f} over {CHI2_DRAWS} draws, df 6, counts {counts}")
    assert statistic < CHI2_CRITICAL_DF6_P001
    # The same test rejects draws that follow other weights: the test has power.
    skewed = replace(
        GASHAPON,
        prizes=type(GASHAPON.prizes)(
            tuple(
                replace(p, weight=p.weight + (200 if p.name == "jackpot" else 0))
                for p in GASHAPON.prizes.entries
            )
        ),
    )
    assert chi_square(counts_of(SEED, skewed, CHI2_DRAWS), GASHAPON, CHI2_DRAWS) > 100


def pity_pool(misses: int = 3) -> PoolRules:
    return replace(GASHAPON, pity_misses=misses)


def test_pity_guarantee_at_n_minus_one_and_n() -> None:
    pool = pity_pool(3)
    # A draw that misses the jackpot with 2 misses (N - 1) counts a third miss...
    nonce = next(
        n
        for n in range(100)
        if pick(pool.prizes, roll(SEED, "cy", "s", n, pool.total_weight).number).name != "jackpot"
    )
    state = DrawState("s", (("gashapon", PoolState(nonce=nonce, misses=2)),))
    out = draw(state, pool, DAY, DEFAULT_RULES, NOW_MS, "cy", 1000, SEED)
    assert not out.record.forced and out.prize.name != "jackpot"
    assert out.state.pool("gashapon").misses == 3
    # ... and the next draw, with N misses, awards it whatever the roll.
    forced = draw(out.state, pool, DAY, DEFAULT_RULES, NOW_MS, "cy", 1000, SEED)
    assert forced.record.forced and forced.prize.name == "jackpot" and forced.credit is not None
    assert forced.credit.amount == 500
    assert forced.state.pool("gashapon").misses == 0


def test_draw_counts_the_day_and_refuses_past_the_cap_or_the_balance() -> None:
    state = DrawState()
    for _ in range(GASHAPON.draws_per_day_max):
        state = draw(state, GASHAPON, DAY, DEFAULT_RULES, NOW_MS, "di", 100, SEED).state
    with pytest.raises(RuleViolation) as err:
        draw(state, GASHAPON, DAY, DEFAULT_RULES, NOW_MS, "di", 100, SEED)
    assert err.value.code == "DAILY_CAP_REACHED"
    tomorrow = NOW_MS + 86_400_000
    assert draw(state, GASHAPON, DAY, DEFAULT_RULES, tomorrow, "di", 100, SEED).record.nonce == 10
    with pytest.raises(RuleViolation) as err:
        draw(DrawState(), GASHAPON, DAY, DEFAULT_RULES, NOW_MS, "di", 99, SEED)
    assert err.value.code == "INSUFFICIENT_FUNDS"


def test_a_sold_out_prize_becomes_the_fallback() -> None:
    number = next(
        n for n in range(500) if pick(GASHAPON.prizes, roll(SEED, "ed", "0", n, 10500).number).stock
    )
    state = DrawState(pools=(("gashapon", PoolState(nonce=number)),))
    out = draw(state, GASHAPON, DAY, DEFAULT_RULES, NOW_MS, "ed", 100, SEED)
    gone = draw(
        state, GASHAPON, DAY, DEFAULT_RULES, NOW_MS, "ed", 100, SEED, frozenset({out.record.drawn})
    )
    assert gone.record.sold_out and gone.prize.name == "ten_coins"
    assert gone.record.drawn == out.record.drawn and gone.credit is not None


def test_client_seed_default_and_choice() -> None:
    out = draw(DrawState(), GASHAPON, DAY, DEFAULT_RULES, NOW_MS, "fa", 100, SEED)
    assert out.record.client_seed == DEFAULT_CLIENT_SEED
    chosen = set_client_seed(DrawState(), "my-own_seed")
    assert (
        draw(chosen, GASHAPON, DAY, DEFAULT_RULES, NOW_MS, "fa", 100, SEED).record.client_seed
        == "my-own_seed"
    )
    with pytest.raises(RuleViolation):
        set_client_seed(DrawState(), "bad seed!")
    assert DrawState.from_wire(out.state.to_wire()) == out.state


def test_periods_daily_and_weekly_in_the_rules_time_zone() -> None:
    assert period_of("daily", SHANGHAI, shanghai_ms("2026-11-23T00:00:00")).id == "20261123"
    assert period_of("daily", SHANGHAI, shanghai_ms("2026-11-22T23:59:59.999")).id == "20261122"
    week = period_of("weekly", SHANGHAI, shanghai_ms("2026-11-29T23:00:00"))  # a Sunday
    assert week.id == "20261123"  # its Monday
    assert week.end_ms - week.start_ms == 7 * 86_400_000
    assert not week.revealed(week.end_ms) and week.revealed(week.end_ms + 60_000)


def records_of(pool: PoolRules, players: int, per_player: int) -> list[DrawRecord]:
    records = []
    for p in range(players):
        state = DrawState()
        for _ in range(per_player):
            out = draw(state, pool, DAY, DEFAULT_RULES, NOW_MS, f"v{p}", 10**6, SEED)
            records.append(out.record)
            state = out.state
    return records


def test_verify_a_period_ok_and_detects_tampering() -> None:
    pool = pity_pool(3)
    records = records_of(pool, 5, 8)
    assert any(r.forced for r in records)
    report = verify_period(pool, DAY, SEED, seed_hash(SEED), records)
    assert report.ok and report.draws == 40, report.problems
    # A recorded result changed to a better prize.
    victim = next(i for i, r in enumerate(records) if r.awarded != "jackpot")
    tampered = list(records)
    tampered[victim] = replace(records[victim], awarded="jackpot", drawn="jackpot")
    bad = verify_period(pool, DAY, SEED, seed_hash(SEED), tampered)
    assert not bad.ok and any("computed" in p for p in bad.problems)
    # A number changed (the prize kept).
    tampered[victim] = replace(records[victim], number=(records[victim].number + 1) % 10500)
    assert not verify_period(pool, DAY, SEED, seed_hash(SEED), tampered).ok
    # Another seed revealed than the one committed to.
    other = hashlib.sha256(b"another seed").hexdigest()
    swapped = verify_period(pool, DAY, other, seed_hash(SEED), records)
    assert not swapped.ok and "does not hash" in swapped.problems[0]
    # A draw left out of the log breaks the player's nonce chain.
    missing = verify_period(pool, DAY, SEED, seed_hash(SEED), records[:3] + records[4:])
    assert not missing.ok and any("missing" in p for p in missing.problems)
    # A guarantee skipped: misses reset by hand.
    forced_at = next(i for i, r in enumerate(records) if r.forced)
    skipped = list(records)
    skipped[forced_at] = replace(records[forced_at], misses_before=0, forced=False)
    assert not verify_period(pool, DAY, SEED, seed_hash(SEED), skipped).ok


def test_verify_counts_stock_and_sold_out_claims() -> None:
    tiny = replace(
        GASHAPON,
        prizes=type(GASHAPON.prizes)(
            tuple(
                replace(p, stock=1 if p.name == "coupon_five_yuan" else p.stock)
                for p in GASHAPON.prizes.entries
            )
        ),
    )
    records = [r for r in records_of(tiny, 20, 3) if r.drawn == "coupon_five_yuan"]
    assert len(records) >= 2
    over = verify_period(tiny, DAY, SEED, seed_hash(SEED), records)
    assert any("stock 1" in p for p in over.problems)
    # A sold-out claim for a prize without a stock limit (a draw that owed its prize).
    unlimited = next(r for r in records_of(tiny, 5, 2) if tiny.prizes[r.drawn].stock == 0)
    fake = replace(unlimited, sold_out=True, awarded="ten_coins")
    claims = verify_period(tiny, DAY, SEED, seed_hash(SEED), [fake]).problems
    assert any("no stock limit" in p for p in claims)


def test_pool_table_round_trips_through_the_wire() -> None:
    assert pool_from_wire(pool_to_wire(GASHAPON)) == GASHAPON


def test_shipped_rules_carry_the_default_pool() -> None:
    assert DEFAULT_RULES.draw.pools == POOLS_DEFAULT
    assert Rules.__dataclass_fields__["draw"].default.pools == POOLS_DEFAULT


BAD_DRAW = """
version = "t"
[signin]
rewards = [10]
[draw]
reservation_timeout_s = 0
[draw.pools.p]
cost_coins = 0
period = "hourly"
pity_misses = 5
fallback = "nope"
[draw.pools.p.prizes.a]
kind = "coins"
weight = 0
[draw.pools.p.prizes.b]
kind = "goods"
weight = 5
coins = 3
stock = 2
[draw.pools.q]
cost_coins = 10
fallback = "b"
pity_misses = 1
pity_prize = "b"
[draw.pools.q.prizes.b]
kind = "goods"
weight = 1
stock = 4
"""


def test_a_bad_draw_section_reports_every_problem() -> None:
    with pytest.raises(RulesError) as err:
        parse_rules(BAD_DRAW)
    text = str(err.value)
    for words in (
        "draw.reservation_timeout_s",
        "draw.pools.p.cost_coins",
        "draw.pools.p.period",
        "draw.pools.p.prizes.a.coins: required",
        "draw.pools.p.prizes.a.weight",
        "draw.pools.p.prizes.b.coins: only a prize of kind 'coins'",
        "draw.pools.q.fallback: prize 'b' must have no stock limit",
        "draw.pools.q.pity_prize: prize 'b' must have no stock limit",
    ):
        assert words in text, (words, text)


def test_no_pools_is_allowed() -> None:
    rules = parse_rules('version = "t"\n[signin]\nrewards = [10]\n[draw.pools]\n')
    assert len(rules.draw.pools) == 0
