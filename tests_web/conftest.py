"""Fixtures for the browser tests (`make test-web`): a real `manor serve` process and a real
headless Chromium driven by Playwright for Python.

The browser is Debian's `chromium` (apt-get install chromium), never one Playwright
downloads: `playwright install` fetches from a CDN this project does not depend on.
MANOR_CHROMIUM names another binary. Tests that use `browser` are plain (sync) tests:
Playwright's sync API refuses to run inside a running event loop.

Screenshots go to tests_web/artifacts/ (gitignored), one PNG per screen, named by the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from server.auth import issue_token
from server.store.embedded import EmbeddedStore, free_port
from tests.live import SECRET
from tests.processes import die_with_parent

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
ADMIN_KEY = "web-admin-key-0123456789-abcdefghijklmnop"
READY_WAIT_S_MAX = 20.0
STOP_WAIT_S_MAX = 10.0
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str:
    """MANOR_CHROMIUM, else Debian's chromium on PATH; a missing browser fails, never skips."""
    override = os.environ.get("MANOR_CHROMIUM")
    if override:
        return override
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        "no Chromium: `apt-get install -y chromium` (as root), or set MANOR_CHROMIUM"
    )


T = TypeVar("T")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine (a ManorClient session, say) to its end from a browser test: the
    sync Playwright API keeps an event loop on this thread, so it runs on another one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@dataclass(frozen=True)
class WebServer:
    """A running `manor serve` with the dev clock, dev login and an admin key."""

    port: int
    admin_key: str
    log_file: Path
    rules_file: Path  # a copy of game_rules/default.toml, the test's to edit

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def token(self, player: str, ttl_s: int = 3600) -> str:
        """A player token signed with the server's secret (as `manor token` mints)."""
        return issue_token(SECRET, player, int(time.time()), ttl_s)

    def advance(self, advance_ms: int) -> int:
        """Move the server's dev clock forward; returns its now_ms."""
        reply = httpx.post(f"{self.http}/dev/clock", json={"advance_ms": advance_ms})
        reply.raise_for_status()
        now_ms: int = reply.json()["now_ms"]
        return now_ms

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An admin API call with the key, e.g. admin("GET", "/v1/admin/players/alice")."""
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        return httpx.request(method, f"{self.http}{path}", headers=headers, **kwargs)


@pytest.fixture(scope="session")
def web_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStore]:
    """One embedded Valkey for the session; each `web_server` empties it first."""
    store = EmbeddedStore(tmp_path_factory.mktemp("web-store"), appendfsync="no")
    store.start()
    yield store
    store.stop()


@pytest.fixture
def web_server(web_store: EmbeddedStore, tmp_path: Path) -> Iterator[WebServer]:
    """`manor serve` on a free port over an emptied store, with MANOR_DEV_CLOCK=1,
    MANOR_DEV_LOGIN=1, an admin key and its own copy of the default rules (`rules_file`);
    jobs on (timers fire, pushes flow) as in `make run`.
    Its log is tmp_path/serve.log, printed if the test fails."""
    import redis

    with redis.Redis.from_url(web_store.url) as client:
        client.flushall()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANOR_")}
    env |= {
        "MANOR_REDIS_URL": web_store.url,
        "MANOR_JWT_SECRET": SECRET,
        "MANOR_PORT": str(port),
        "MANOR_DATA_DIR": str(tmp_path / "data"),
        "MANOR_DEV_CLOCK": "1",
        "MANOR_DEV_LOGIN": "1",
        "MANOR_ADMIN_KEY": ADMIN_KEY,
    }
    log_file = tmp_path / "serve.log"
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text((REPO / "game_rules" / "default.toml").read_text("utf-8"), "utf-8")
    env["MANOR_RULES"] = str(rules_file)
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve"],
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            preexec_fn=die_with_parent,  # noqa: PLW1509 (only prctl, async-signal-safe)
        )
    server = WebServer(port, ADMIN_KEY, log_file, rules_file)
    try:
        deadline = time.monotonic() + READY_WAIT_S_MAX
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"manor serve exited:\n{log_file.read_text()[-3000:]}")
            assert time.monotonic() < deadline, "manor serve did not become ready"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{server.http}/readyz").status_code == 200:
                    break
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(STOP_WAIT_S_MAX)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Chromium for the session; a test opens its own contexts (one per player)."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            # Containers run as root without a usable sandbox or a big /dev/shm.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Callable[[Page, str], Path]:
    """screenshot(page, "lookup") saves tests_web/artifacts/<test>-lookup.png (full page)."""
    ARTIFACTS.mkdir(exist_ok=True)
    test = request.node.name.replace("[", "-").replace("]", "")

    def save(page: Page, name: str) -> Path:
        path = ARTIFACTS / f"{test}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save


@pytest.fixture
def console_errors() -> Callable[[Page], list[str]]:
    """Collects a page's console errors and uncaught exceptions; a test asserts it is empty."""

    def watch(page: Page) -> list[str]:
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        return errors

    return watch


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure, show the server's log: a browser test's cause is often on that side."""
    outcome = yield
    report = outcome.get_result()
    server = getattr(item, "funcargs", {}).get("web_server")
    if report.failed and isinstance(server, WebServer) and server.log_file.exists():
        report.sections.append(("manor serve log", server.log_file.read_text()[-5000:]))
