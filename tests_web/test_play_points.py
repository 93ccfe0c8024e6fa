"""The points center on /play in a real headless Chromium against `manor serve`, at phone
width: dave gets coins from support (the admin API), signs in by name, buys a coins-only
item in the mall and sees the order delivered and his balance fall; a second press is
refused with a clear message. He sets a client seed, draws once and sees the prize, the
seed hash he was committed to and the inputs to check it; a day later on the dev clock
the period's seed is revealed and the page checks it and his draw. A screenshot of each
screen goes to tests_web/artifacts/."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from tests_web.conftest import WebServer
from tests_web.test_play import DAY_MS, PHONE, WAIT_MS, enter, t

Shot = Callable[[Page, str], Path]
GRANT = 1000
COUPON = 500  # coupon_five: 500 coins, coins only, one a day
DRAW_COST = 100
HASH = re.compile(r"^[0-9a-f]{64}$")


def balance(page: Page) -> int:
    return int(page.locator(t("balance")).inner_text())


def quiet(page: Page) -> None:
    """Waits for the toasts to go (4 s each), so a screenshot shows the screen under them."""
    expect(page.locator(t("toast"))).to_have_count(0, timeout=3 * WAIT_MS)


def buys_a_coupon(page: Page, screenshot: Shot) -> None:
    page.click(t("tab-mall"))
    item = page.locator(t("mall-item-coupon_five"))
    expect(item).to_contain_text("5 yuan off any order")
    expect(page.locator(t("mall-price-coupon_five"))).to_have_text("500 coins")
    expect(page.locator(t("mall-limit-coupon_five"))).to_have_text("you may buy 1 more")
    expect(page.locator(t("mall-price-lancome_sample"))).to_have_text("3000 coins + ¥9.90")
    expect(page.locator(t("mall-locked-free_shipping"))).to_have_text("level 2+")
    expect(page.locator(t("mall-buy-free_shipping"))).to_be_disabled()
    expect(page.locator(t("mall-window-double_eleven_flash"))).to_contain_text("on sale 2026-11-")
    expect(page.locator(t("mall-orders"))).to_contain_text("No orders yet")

    page.click(t("mall-buy-coupon_five"))
    expect(page.locator(t("mall-result"))).to_have_text(
        "Bought 5 yuan off any order for 500 coins (delivered)"
    )
    expect(page.locator(t("balance"))).to_have_text(str(GRANT - COUPON))
    order = page.locator(f'{t("mall-orders")} li[data-item="coupon_five"]')
    expect(order).to_have_count(1)
    expect(order).to_have_attribute("data-state", "delivered")
    expect(order.locator(t("mall-order-state"))).to_have_text("delivered")
    expect(page.locator(t("mall-buy-coupon_five"))).to_have_text("Limit reached")
    expect(page.locator(t("mall-buy-coupon_five"))).to_be_disabled()
    expect(page.locator(t("mall-wallet"))).to_contain_text("500 of 500 coins available")
    # The mall_order push reached the feed (and its toast).
    expect(page.locator(f'{t("feed-item")}[data-kind="mall_order"]').first).to_contain_text(
        "Order coupon_five: delivered"
    )
    quiet(page)
    screenshot(page, "mall")

    # A press from a stale view (another phone bought it): the server's refusal, in words.
    page.evaluate("window.manor.mall.buy('coupon_five')")
    expect(page.locator(t("mall-result"))).to_have_text(
        "5 yuan off any order: you reached your limit for this item"
    )
    expect(page.locator(t("balance"))).to_have_text(str(GRANT - COUPON))
    expect(order).to_have_count(1)


def draws_once(page: Page, screenshot: Shot) -> str:
    """Returns the period id of the draw."""
    page.click(t("tab-draw"))
    seed_hash = page.locator(t("draw-seed-hash"))
    expect(seed_hash).to_have_text(HASH)
    expect(page.locator(t("draw-cost"))).to_have_text(str(DRAW_COST))
    expect(page.locator(t("draw-nonce"))).to_have_text("0")
    expect(page.locator(t("draw-today"))).to_have_text("0 of 10")
    expect(page.locator(t("draw-client-seed-used"))).to_have_text("0 (not set yet)")
    expect(page.locator(t("draw-misses"))).to_contain_text("0 of 50 draws without jackpot")
    expect(page.locator(t("draw-prize-jackpot"))).to_contain_text("0.95 %")
    expect(page.locator(t("draw-prize-gift_pack"))).to_contain_text("5/5")
    committed = seed_hash.inner_text()

    page.fill(t("draw-client-seed"), "lucky-cat")
    page.click(t("draw-seed-set"))
    expect(page.locator(t("draw-seed-result"))).to_contain_text("lucky-cat")
    expect(page.locator(t("draw-client-seed-used"))).to_have_text("lucky-cat")

    before = balance(page)
    page.click(t("draw-button"))
    result = page.locator(t("draw-result"))
    expect(result).to_be_visible()
    expect(page.locator(t("draw-result-prize"))).to_contain_text("You got")
    expect(page.locator(t("draw-result-seed-hash"))).to_have_text(committed)
    expect(page.locator(t("draw-result-nonce"))).to_have_text("0")
    expect(page.locator(t("draw-result-digest"))).to_have_text(HASH)
    expect(page.locator(t("draw-result-number"))).to_contain_text("of 10500")
    expect(result).to_contain_text("lucky-cat")
    expect(page.locator(t("draw-nonce"))).to_have_text("1")
    expect(page.locator(t("draw-today"))).to_have_text("1 of 10")
    # The balance is the grant, less the coupon and the draw, plus a coin prize if any.
    prize = page.locator(t("draw-result-prize")).get_attribute("data-prize")
    won = {"ten_coins": 10, "fifty_coins": 50, "jackpot": 500}.get(prize or "", 0)
    expect(page.locator(t("balance"))).to_have_text(str(before - DRAW_COST + won))
    period = page.locator(t("draw-period")).inner_text().split(" ")[0]
    expect(page.locator(t(f"draw-period-{period}"))).to_have_attribute("data-revealed", "false")
    expect(page.locator(t(f"draw-seed-{period}"))).to_contain_text("seed shown after")
    quiet(page)
    screenshot(page, "draw")
    return period


def seed_revealed_a_day_later(page: Page, server: WebServer, period: str, screenshot: Shot) -> None:
    """The period ends on the dev clock; once its seed is out the page checks the seed
    against the hash and recomputes this page's draw from it."""
    server.advance(DAY_MS + 120_000)
    page.click(t("tab-mall"))
    page.click(t("tab-draw"))
    expect(page.locator(t(f"draw-period-{period}"))).to_have_attribute("data-revealed", "true")
    expect(page.locator(t(f"draw-seed-check-{period}"))).to_have_text("hash ✓")
    expect(page.locator(t("draw-check-0"))).to_have_text("draw #0 ✓")
    expect(page.locator(t("draw-nonce"))).to_have_text("1")  # never reset
    expect(page.locator(t("draw-today"))).to_have_text("0 of 10")  # a new day
    quiet(page)
    screenshot(page, "draw-revealed")


def test_player_buys_in_the_mall_and_draws_on_a_phone(
    browser: Browser, web_server: WebServer, screenshot: Shot
) -> None:
    reply = web_server.admin(
        "POST",
        "/v1/admin/grant",
        json={"player": "dave", "coins": GRANT, "reason": "demo", "grant_id": "points-1"},
    )
    assert reply.status_code == 200, reply.text
    context = browser.new_context(viewport=PHONE)
    page, errors = enter(context, web_server, "dave")
    page.set_default_timeout(WAIT_MS)
    expect(page.locator(t("balance"))).to_have_text(str(GRANT))
    buys_a_coupon(page, screenshot)
    period = draws_once(page, screenshot)
    seed_revealed_a_day_later(page, web_server, period, screenshot)
    assert errors == [], errors  # the page logs no error at all
    context.close()
