"""The operators' console (/console) in a real headless Chromium against `manor serve`:
key, player lookup, grant and reversal with a reason, rules validate and reload, the
system plots; and a grant reaching alice's /play page without a reload."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
from playwright.sync_api import Browser, Page, expect

from server.client import ManorClient
from tests_web.conftest import WebServer, run_async

Shot = Callable[[Page, str], Path]
WAIT_MS = 10_000


def t(name: str) -> str:
    return f'[data-test="{name}"]'


def open_console(browser: Browser, server: WebServer) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{server.http}/console")
    page.fill(t("console-key"), server.admin_key)
    page.click(t("console-key-save"))
    expect(page.locator(t("rules-version"))).to_have_text("2026.11-default")
    return page


def sign_in(server: WebServer, player: str) -> int:
    """The player signs in over the WebSocket API; returns the coins credited."""

    async def run() -> int:
        client = await ManorClient.connect(server.ws, server.token(player))
        try:
            coins: int = (await client.call("sign_in"))["coins"]
            return coins
        finally:
            await client.close()

    return run_async(run())


def test_a_wrong_key_is_refused_and_the_console_stays_closed(
    browser: Browser, web_server: WebServer, screenshot: Shot
) -> None:
    page = browser.new_page()
    page.goto(f"{web_server.http}/console")
    page.fill(t("console-key"), "not-the-key")
    page.click(t("console-key-save"))
    expect(page.locator(t("console-error"))).to_contain_text("not the admin key")
    expect(page.locator("#main")).to_be_hidden()
    screenshot(page, "wrong-key")
    page.close()


def test_console_looks_up_grants_and_reverses(
    browser: Browser,
    web_server: WebServer,
    screenshot: Shot,
    console_errors: Callable[..., list[str]],
) -> None:
    signed_in = sign_in(web_server, "carol")
    page = open_console(browser, web_server)
    errors = console_errors(page)
    page.fill(t("lookup-player"), "carol")
    page.click(t("lookup-go"))
    expect(page.locator(t("player-balance"))).to_have_text(str(signed_in))
    expect(page.locator(t("player-verify"))).to_have_text("ok (1 entries)")
    expect(page.locator(t("player-streak"))).to_have_text("1")
    expect(page.locator(f"{t('player-batches')} tbody tr")).to_have_count(1)
    expect(page.locator(t("journal-row"))).to_have_count(1)
    screenshot(page, "lookup")

    page.fill(t("grant-coins"), "250")
    page.fill(t("grant-reason"), "ticket 4711")
    page.click(t("grant-submit"))
    expect(page.locator(t("grant-result"))).to_contain_text("Granted 250 coins")
    expect(page.locator(t("player-balance"))).to_have_text(str(signed_in + 250))
    grant_row = page.locator(t("journal-row")).first
    expect(grant_row).to_contain_text("ticket 4711")
    transfer_id = grant_row.get_attribute("data-transfer-id")
    assert transfer_id is not None and transfer_id.startswith("grant:console-")
    screenshot(page, "granted")

    grant_row.locator(t("journal-reverse")).click()
    expect(page.locator(t("reverse-transfer-id"))).to_have_value(transfer_id)
    page.fill(t("reverse-reason"), "wrong player")
    page.click(t("reverse-submit"))
    expect(page.locator(t("reverse-result"))).to_contain_text("250 coins moved")
    expect(page.locator(t("player-balance"))).to_have_text(str(signed_in))
    expect(page.locator(t("journal-row"))).to_have_count(3)
    expect(page.locator(t("player-verify"))).to_have_text("ok (3 entries)")
    # The server agrees with the page.
    view = web_server.admin("GET", "/v1/admin/players/carol").json()
    assert view["balance"] == signed_in and view["verify"]["ok"]
    screenshot(page, "reversed")

    page.fill(t("lookup-player"), "nobody")
    page.click(t("lookup-go"))
    expect(page.locator(t("lookup-status"))).to_contain_text("no such player")
    assert errors == [] or all("404" in e for e in errors), errors
    page.close()


def test_console_validates_and_reloads_rules(
    browser: Browser, web_server: WebServer, screenshot: Shot
) -> None:
    page = open_console(browser, web_server)
    page.click(t("rules-validate"))
    expect(page.locator(t("rules-result"))).to_contain_text("valid, version 2026.11-default")
    page.click(t("rules-reload"))
    expect(page.locator(t("rules-result"))).to_contain_text("unchanged (2026.11-default)")

    text = web_server.rules_file.read_text("utf-8")
    web_server.rules_file.write_text(text + "\n[nope]\n", "utf-8")
    page.click(t("rules-validate"))
    expect(page.locator(t("rules-result"))).to_contain_text("1 problem(s)")
    expect(page.locator(f"{t('rules-changes')} li")).to_contain_text(["nope"])
    page.click(t("rules-reload"))
    expect(page.locator(t("rules-result"))).to_contain_text("RULES_INVALID")
    expect(page.locator(t("rules-version"))).to_have_text("2026.11-default")
    screenshot(page, "rules-invalid")

    water = 'mode = "share"\nshare_pct = 10'
    assert water in text
    web_server.rules_file.write_text(
        text.replace('"2026.11-default"', '"2026.12-ops"').replace(
            water, water.replace("10", "15")
        ),
        "utf-8",
    )
    page.click(t("rules-reload"))
    expect(page.locator(t("rules-result"))).to_contain_text("2026.11-default -> 2026.12-ops")
    expect(page.locator(f"{t('rules-changes')} li")).to_have_text(
        ["version: '2026.11-default' -> '2026.12-ops'", "farm.water.share_pct: 10 -> 15"]
    )
    expect(page.locator(t("console-rules-version"))).to_have_text("rules: 2026.12-ops")
    screenshot(page, "rules-reloaded")
    page.close()


def test_console_plots_live_figures(
    browser: Browser, web_server: WebServer, screenshot: Shot
) -> None:
    page = open_console(browser, web_server)
    for player in ("dan", "erin", "fay"):
        sign_in(web_server, player)
    bad = web_server.admin("POST", "/v1/admin/grant", json={"player": "dan"})
    assert bad.status_code == 400
    # Two polls at least make a rate; the sign-ins show as minted coins by source.
    expect(page.locator(f"{t('plot-minted')} polyline[data-series='signin']")).to_have_count(1)
    expect(page.locator(f"{t('plot-ops')} polyline[data-series='sign_in']")).to_have_count(
        1, timeout=WAIT_MS
    )
    expect(page.locator(f"{t('sys-op-row')}[data-op='sign_in']")).to_contain_text("3")
    expect(page.locator(f"{t('sys-op-row')}[data-op='admin.grant']")).to_contain_text("BAD_ARGS 1")
    figures = web_server.admin("GET", "/v1/admin/system").json()
    minted = figures["coins"]["minted"]["signin"]
    expect(page.locator(t("plot-minted"))).to_contain_text(f"signin {minted}")
    expect(page.locator(t("sys-backlog"))).to_have_text(str(figures["triggers"]["backlog"]))
    screenshot(page, "system")
    page.close()


def test_landing_page_links_play_and_console(browser: Browser, web_server: WebServer) -> None:
    page = browser.new_page()
    page.goto(web_server.http)
    page.click(t("landing-console"))
    expect(page.locator(t("console-key"))).to_be_visible()
    assert httpx.get(f"{web_server.http}/static/console-plot.js").status_code == 200
    page.close()


def test_a_console_grant_reaches_alices_open_play_page_without_a_reload(
    browser: Browser, web_server: WebServer, screenshot: Shot
) -> None:
    """alice plays on a phone-sized page (the /play page, server/web/static/play.*); an
    operator grants her coins from the console; her balance and feed change by the push."""
    phone = browser.new_context(viewport={"width": 390, "height": 844})
    alice = phone.new_page()
    alice.set_default_timeout(WAIT_MS)
    alice.goto(f"{web_server.http}/play")
    alice.fill(t("login-name"), "alice")
    alice.click(t("login-submit"))
    expect(alice.locator(t("player"))).to_have_text("alice")
    alice.click(t("signin"))
    expect(alice.locator(t("balance"))).not_to_have_text("–")
    expect(alice.locator(t("balance"))).not_to_have_text("0")
    before = int(alice.locator(t("balance")).inner_text())
    alice.evaluate("window.__sameDocument = true")  # gone if the page were reloaded
    screenshot(alice, "alice-before")

    console = open_console(browser, web_server)
    console.fill(t("lookup-player"), "alice")
    console.click(t("lookup-go"))
    expect(console.locator(t("player-balance"))).to_have_text(str(before))
    console.fill(t("grant-coins"), "500")
    console.fill(t("grant-reason"), "sorry for the outage")
    console.click(t("grant-submit"))
    expect(console.locator(t("grant-result"))).to_contain_text("Granted 500 coins")
    screenshot(console, "console-grant")

    # Well within the page's 15 s refresh: this is the balance push, not a poll.
    expect(alice.locator(t("balance"))).to_have_text(str(before + 500), timeout=5_000)
    expect(alice.locator(t("feed"))).to_contain_text("+500 coins")
    assert alice.evaluate("window.__sameDocument") is True
    screenshot(alice, "alice-after")
    console.close()
    phone.close()
