"""The `manor` command as an operator runs it: real subprocesses, a real store."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from redis.asyncio import Redis

from server.auth import verify_token
from server.ledger.commit import Commit, apply
from server.ledger.ledger import Transfer
from server.settings import SettingsError, load_settings
from server.store.embedded import EmbeddedStore
from server.store.keys import PlayerKeys
from server.store.store import Store
from tests.live import SECRET

BAD_RULES = """
version = ""
timezone = "Mars/Olympus"
[signin]
rewards = [10, -5]
colour = "gold"
"""


def manor(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MANOR_")} | env
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_rules_check_lists_every_problem_and_fails(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD_RULES)
    done = manor("rules", "check", str(path))
    assert done.returncode == 1
    for words in ("version", "Mars/Olympus", "rewards[1]", "colour"):
        assert words in done.stderr


def test_rules_check_accepts_the_shipped_files() -> None:
    for name in ("default.toml", "demo.toml"):
        done = manor("rules", "check", str(Path("game_rules") / name))
        assert done.returncode == 0, done.stderr
        assert "ok" in done.stdout


def test_token_prints_a_token_for_the_configured_secret() -> None:
    done = manor("token", "pat", "--ttl", "60", MANOR_JWT_SECRET=SECRET)
    assert done.returncode == 0, done.stderr
    assert verify_token(SECRET, done.stdout.strip()) == "pat"


def test_token_generates_and_keeps_the_embedded_secret(tmp_path: Path) -> None:
    first = manor("token", "pat", "--create-secret", MANOR_DATA_DIR=str(tmp_path))
    secret = (tmp_path / "jwt_secret").read_text().strip()
    assert verify_token(secret, first.stdout.strip()) == "pat"
    manor("token", "pat", MANOR_DATA_DIR=str(tmp_path))
    assert (tmp_path / "jwt_secret").read_text().strip() == secret


async def test_ledger_verify_exit_code_follows_the_ledger(
    store: Store, redis: Redis, redis_server: EmbeddedStore
) -> None:
    keys = PlayerKeys("liv")
    batch = date(2027, 6, 30)
    await apply(store, keys, Commit(transfers=[Transfer("t1", "c", 10, "mint:signin", batch)]), 1)
    await apply(store, keys, Commit(transfers=[Transfer("t2", "c", 15, "mint:signin", batch)]), 2)
    good = manor("ledger", "verify", MANOR_REDIS_URL=redis_server.url)
    assert good.returncode == 0, good.stderr
    assert "1 players, 2 entries" in good.stdout and "ok" in good.stdout
    await redis.lset(keys.journal, 0, await redis.lindex(keys.journal, 1))
    bad = manor("ledger", "verify", "--user", "liv", MANOR_REDIS_URL=redis_server.url)
    assert bad.returncode == 1
    assert "player liv entry seq 2" in bad.stderr


def test_bad_settings_stop_start_up_naming_each_variable() -> None:
    env = {
        "MANOR_PORT": "eighty",
        "MANOR_REDIS_URL": "http://x",
        "MANOR_JWT_SECRET": "short",
        "MANOR_DEV_CLOCK": "maybe",
        "MANOR_FRAME_BYTES_MAX": "10",
        "MANOR_STORE_REPLICAS": "1",  # without MANOR_STORE_SHARDS
        "MANOR_ADMIN_KEY": "short",
        "MANOR_STORE_MALLOC": "tcmalloc",
    }
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    named = " ".join(err.value.problems)
    for variable in env:
        assert variable in named


def test_cluster_urls_are_checked_seed_by_seed() -> None:
    good = load_settings({"MANOR_REDIS_URL": "rediss+cluster://u:p@a:7000,[::1]:7001,b:7002"})
    assert good.redis_url.startswith("rediss+cluster://")
    for bad in ("redis+cluster://a:7000,b", "redis+cluster://a:0", "redis+cluster://"):
        with pytest.raises(SettingsError, match="MANOR_REDIS_URL"):
            load_settings({"MANOR_REDIS_URL": bad})
    seeds = ",".join(f"n{i}:7000" for i in range(65))
    with pytest.raises(SettingsError, match="at most 64 seed nodes"):
        load_settings({"MANOR_REDIS_URL": f"redis+cluster://{seeds}"})


def test_serve_refuses_bad_settings_with_exit_code_2(tmp_path: Path) -> None:
    done = manor("serve", MANOR_PORT="0", MANOR_DATA_DIR=str(tmp_path))
    assert done.returncode == 2
    assert "MANOR_PORT" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("shards", [0, 3])
def test_serve_stops_its_embedded_store_on_sigterm(tmp_path: Path, shards: int) -> None:
    """One embedded server, or (MANOR_STORE_SHARDS=3) a local cluster of three primaries."""
    import signal
    import time

    import httpx

    from server.store.embedded import _answers_ping, free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANOR_")}
    env |= {"MANOR_PORT": str(port), "MANOR_DATA_DIR": str(tmp_path)}
    if shards:
        env["MANOR_STORE_SHARDS"] = str(shards)
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--log-level", "warning"], env=env
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, "manor serve did not become ready"
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        primaries = [n for n in ready.json()["nodes"] if n.endswith("(primary)")]
        assert len(primaries) == max(shards, 1)
        url = (tmp_path / "store" / "url").read_text().strip()
        assert url.startswith("redis+cluster://" if shards else "redis://")
        seeds = url.split("://", 1)[1].split("/")[0].split(",")
        store_ports = [int(seed.rsplit(":", 1)[1]) for seed in seeds]
        assert len(store_ports) == max(shards, 1)
        assert all(_answers_ping(p) for p in store_ports)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert not any(_answers_ping(p) for p in store_ports)
        assert not (tmp_path / "store" / "url").exists()
    finally:
        process.kill()
        process.wait()


def unreadable_paths(tmp_path: Path) -> dict[str, Path]:
    """Rules paths that cannot be read, each for another reason (root reads any mode)."""
    plain = tmp_path / "plain.toml"
    plain.write_text("version = 'x'\n")
    bad_utf8 = tmp_path / "latin1.toml"
    bad_utf8.write_bytes(b'version = "caf\xe9"\n')
    paths = {
        "missing": tmp_path / "MISSING.toml",
        "directory": tmp_path,
        "under a file": plain / "rules.toml",
        "name too long": tmp_path / ("x" * 300 + ".toml"),
        "invalid utf-8": bad_utf8,
    }
    if os.geteuid() != 0:
        locked = tmp_path / "locked.toml"
        locked.write_text("version = 'x'\n")
        locked.chmod(0)
        paths["unreadable"] = locked
    return paths


def test_rules_check_of_a_file_it_cannot_read_prints_one_line_and_exits_2(
    tmp_path: Path,
) -> None:
    for why, path in unreadable_paths(tmp_path).items():
        done = manor("rules", "check", str(path))
        assert done.returncode == 2, (why, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, (why, done.stderr)
        assert lines[0].startswith("manor rules check: ") and str(path) in lines[0], lines
        assert done.stdout == ""


def test_serve_with_unreadable_rules_exits_2_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'version = "caf\xe9"\n')
    done = manor("serve", MANOR_RULES=str(bad), MANOR_DATA_DIR=str(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "latin1.toml" in done.stderr
