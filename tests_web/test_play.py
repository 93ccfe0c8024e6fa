"""/play in a real headless Chromium against `manor serve`, played as two people would on
their phones (375 px wide, one browser context each): alice signs in and sees her
balance change; she and bob become friends from the page; bob plants, alice waters and,
after the friendship cooldown on the dev clock, steals; bob's page shows the theft as it
happens and his balance after the harvest. A screenshot of each screen goes to
tests_web/artifacts/."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect

from tests_web.conftest import WebServer

Shot = Callable[[Page, str], Path]
WAIT_MS = 10_000
PHONE: ViewportSize = {"width": 375, "height": 812}
DAY_MS = 86_400_000


def t(name: str) -> str:
    return f'[data-test="{name}"]'


def enter(context: BrowserContext, server: WebServer, player: str) -> tuple[Page, list[str]]:
    """Open /play on a phone-sized page and sign in by name (MANOR_DEV_LOGIN=1)."""
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server.http}/play")
    expect(page.locator(t("login-token"))).to_be_hidden()
    page.fill(t("login-name"), player)
    page.click(t("login-submit"))
    expect(page.locator(t("player"))).to_have_text(player)
    expect(page.locator(t("conn"))).to_have_attribute("data-status", "open")
    return page, errors


def alice_signs_in(alice: Page, screenshot: Shot) -> None:
    """Her balance changes on the page; the week strip marks day 1."""
    expect(alice.locator(t("balance"))).to_have_text("0")
    alice.click(t("signin"))
    expect(alice.locator(t("balance"))).to_have_text("10")
    expect(alice.locator(t("streak"))).to_have_text("1")
    expect(alice.locator(t("week-day-1"))).to_contain_text("10")
    expect(alice.locator(t("signin"))).to_be_disabled()
    screenshot(alice, "alice-signed-in")


def become_friends(alice: Page, bob: Page, screenshot: Shot) -> None:
    """alice asks by player id; bob hears it live and accepts."""
    alice.click(t("tab-friends"))
    alice.fill(t("friend-add-name"), "bob")
    alice.click(t("friend-add"))
    expect(alice.locator(t("friend-result"))).to_have_text("Asked bob")
    expect(bob.locator(t("toast")).last).to_contain_text("alice wants to be friends")
    bob.click(t("tab-friends"))
    bob.click(t("accept-alice"))
    expect(bob.locator(t("friend-alice"))).to_be_visible()
    expect(alice.locator(t("friend-bob"))).to_be_visible()  # her page heard the push
    screenshot(bob, "bob-friends")


def bob_plants(bob: Page, screenshot: Shot) -> None:
    bob.click(t("tab-home"))
    bob.select_option(t("seed"), "turnip")
    bob.click(t("plot-0-plant"))
    expect(bob.locator(t("plot-0"))).to_have_attribute("data-stage", "growing")
    expect(bob.locator(t("plot-0-when"))).to_contain_text("ripe in 3h 59m")
    expect(bob.locator(t("plot-0-harvest"))).to_be_disabled()
    screenshot(bob, "bob-planted")


def alice_waters(alice: Page, bob: Page, screenshot: Shot) -> None:
    """alice visits and waters; bob's page shows it as it happens."""
    alice.click(t("tab-friends"))  # the list is read again: bob's crop can be watered
    expect(alice.locator(t("friend-bob-can-water"))).to_be_visible()
    alice.click(t("visit-bob"))
    alice.click(t("visit-plot-0-water"))
    expect(alice.locator(t("visit-result"))).to_contain_text("Watered")
    expect(alice.locator(t("balance"))).to_have_text("12")
    expect(alice.locator(t("visit-plot-0-water"))).to_be_disabled()
    expect(alice.locator(t("visit-plot-0-steal"))).to_be_disabled()
    screenshot(alice, "alice-visits-bob")
    expect(bob.locator(t("toast")).last).to_contain_text("alice watered plot 1")
    expect(bob.locator(t("plot-0-when"))).to_contain_text("ripe in 3h 35m")


def alice_steals_a_day_later(alice: Page, bob: Page, server: WebServer, screenshot: Shot) -> None:
    """On the dev clock the friendship is old enough and the crop ripe: bob's page ripens
    it by itself (the crop_ripe push brings the server's time); alice looks again and
    steals; bob's page shows the theft as it happens."""
    server.advance(DAY_MS)
    expect(bob.locator(t("plot-0"))).to_have_attribute("data-stage", "ripe")
    expect(bob.locator(t("plot-0-harvest"))).to_be_enabled()
    alice.click(t("visit-bob"))
    expect(alice.locator(t("visit-plot-0"))).to_have_attribute("data-stage", "ripe")
    alice.click(t("visit-plot-0-steal"))
    expect(alice.locator(t("visit-result"))).to_have_text("You took 2 coins")
    expect(alice.locator(t("balance"))).to_have_text("14")
    stolen = bob.locator(f'{t("toast")}[data-kind="stolen"]')
    expect(stolen).to_contain_text("alice stole 2 coins from plot 1!")
    expect(bob.locator(t("plot-0-yield"))).to_contain_text("2 stolen")
    expect(bob.locator(t("feed-count"))).to_be_visible()
    screenshot(bob, "bob-robbed")


def bob_harvests(bob: Page, screenshot: Shot) -> None:
    bob.click(t("plot-0-harvest"))
    expect(bob.locator(t("balance"))).to_have_text("18")
    expect(bob.locator(t("plot-0"))).to_have_attribute("data-stage", "empty")
    bob.click(t("tab-feed"))
    expect(bob.locator(t("feed-item")).first).to_contain_text("+18 coins → 18")
    expect(bob.locator(f'{t("feed-item")}[data-kind="stolen"]')).to_have_count(1)
    expect(bob.locator(f'{t("feed-item")}[data-kind="watered"]')).to_have_count(1)
    screenshot(bob, "bob-feed")


def wallets(alice: Page, bob: Page, screenshot: Shot) -> None:
    """The coins by expiry batch and the journal, for both players."""
    bob.click(t("tab-wallet"))
    expect(bob.locator(t("batch"))).to_have_count(1)
    expect(bob.locator(t("ledger-row"))).to_have_count(1)
    expect(bob.locator(t("ledger-row")).first).to_contain_text("Harvest")
    screenshot(bob, "bob-wallet")
    alice.click(t("tab-wallet"))
    rows = alice.locator(t("ledger-row"))
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("Stole from a friend (bob)")
    expect(rows.nth(1)).to_contain_text("Watered a friend's crop (bob)")
    expect(rows.nth(2)).to_contain_text("Daily sign-in")
    screenshot(alice, "alice-wallet")


def test_two_players_water_steal_and_harvest_on_their_phones(
    browser: Browser, web_server: WebServer, screenshot: Shot
) -> None:
    alice_context = browser.new_context(viewport=PHONE)
    bob_context = browser.new_context(viewport=PHONE)
    alice, alice_errors = enter(alice_context, web_server, "alice")
    bob, bob_errors = enter(bob_context, web_server, "bob")
    alice_signs_in(alice, screenshot)
    become_friends(alice, bob, screenshot)
    bob_plants(bob, screenshot)
    alice_waters(alice, bob, screenshot)
    alice_steals_a_day_later(alice, bob, web_server, screenshot)
    bob_harvests(bob, screenshot)
    wallets(alice, bob, screenshot)
    for errors in (alice_errors, bob_errors):
        assert errors == [], errors  # the page logs no error at all
    alice_context.close()
    bob_context.close()


def test_play_takes_a_token_from_the_url_and_pages_the_ledger(
    browser: Browser, web_server: WebServer, screenshot: Shot
) -> None:
    """The app's way in: /play#token=<jwt> (no name box needed), and a journal longer than
    a page is read with "Older"."""
    for coins in range(1, 26):
        reply = web_server.admin(
            "POST",
            "/v1/admin/grant",
            json={"player": "carol", "coins": coins, "reason": "demo", "grant_id": f"play-{coins}"},
        )
        assert reply.status_code == 200, reply.text
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{web_server.http}/play#token={web_server.token('carol')}")
    expect(page.locator(t("player"))).to_have_text("carol")
    expect(page.locator(t("balance"))).to_have_text(str(sum(range(1, 26))))
    assert "token" not in page.url  # taken out of the address bar and history
    page.click(t("tab-wallet"))
    expect(page.locator(t("ledger-row"))).to_have_count(20)
    page.click(t("ledger-more"))
    expect(page.locator(t("ledger-row"))).to_have_count(25)
    expect(page.locator(t("ledger-more"))).to_be_hidden()
    expect(page.locator(t("ledger-row")).last).to_contain_text("+1")
    screenshot(page, "carol-ledger")
    context.close()


def test_play_refuses_a_bad_token_and_says_so(browser: Browser, web_server: WebServer) -> None:
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{web_server.http}/play#token=not-a-token")
    expect(page.locator(t("login-error"))).to_contain_text("Could not enter")
    expect(page.locator(t("login-name"))).to_be_visible()
    expect(page.locator("#main")).to_be_hidden()
    context.close()
