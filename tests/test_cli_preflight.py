"""What a newcomer trips on, each stopped with one clear line (server/preflight.py) or made
visible (server/logs.py): timestamps and JSON log lines, the push relay's deliveries, tools
run from a folder with no secret or no store, a port already in use."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from server.auth import verify_token
from server.store.embedded import free_port
from tests.test_cli import manor
from tests.test_push_relay import SECRET as PUSH_SECRET
from tests.test_push_relay import Receiver, add, receiver

__all__ = ["receiver"]  # the webhook fixture, shared with test_push_relay.py

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
SERVE_WAIT_S_MAX = 30.0


def test_text_log_lines_start_with_a_timestamp() -> None:
    code = (
        "import logging; from server.logs import configure; configure('text', 'info'); "
        "logging.getLogger('server.x').info('hello %s', 'there')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    line = done.stderr.strip()
    assert TIMESTAMP.match(line), line
    assert line.endswith("INFO server.x: hello there")


def test_serve_with_json_log_format_writes_one_object_per_line(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANOR_")}
    env |= {"MANOR_PORT": str(port), "MANOR_DATA_DIR": str(tmp_path), "MANOR_LOG_FORMAT": "json"}
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + SERVE_WAIT_S_MAX
        assert process.stderr is not None
        while not any("Application startup complete" in line for line in lines):
            assert time.monotonic() < deadline and process.poll() is None, lines
            lines.append(process.stderr.readline())
        process.send_signal(signal.SIGTERM)
        out, rest = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    lines += rest.splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    assert {"ts", "level", "logger", "message"} <= set(records[0])
    assert all(
        re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$", r["ts"]) for r in records
    )
    messages = [r["message"] for r in records]
    assert any(m.startswith("rules 2026.11-default") for m in messages), messages
    assert any(m.startswith("store redis://") for m in messages), messages
    assert out == ""  # nothing unformatted on stdout either


def test_bad_log_format_is_refused(tmp_path: Path) -> None:
    done = manor("serve", MANOR_LOG_FORMAT="xml", MANOR_DATA_DIR=str(tmp_path))
    assert done.returncode == 2 and "MANOR_LOG_FORMAT" in done.stderr


async def test_push_relay_logs_each_delivery(
    redis: Redis, redis_server: Any, receiver: Receiver
) -> None:
    delivery = await add(redis, "ann", coins=3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANOR_")}
    env |= {"MANOR_REDIS_URL": redis_server.url, "MANOR_PUSH_SECRET": PUSH_SECRET.decode()}
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "server.cli", "push-relay", "--webhook", receiver.url),
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while not receiver.received:
            assert time.monotonic() < deadline, "the relay delivered nothing"
            await asyncio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    log = err.decode()
    assert f"push relay: delivered {delivery} crop_ripe to player ann" in log, log
    assert "quiet hours" in log
    assert all(TIMESTAMP.match(line) for line in log.splitlines() if "push relay" in line), log


def test_token_from_a_folder_without_a_secret_refuses(tmp_path: Path) -> None:
    done = manor("token", "pat", MANOR_DATA_DIR=str(tmp_path / "data"))
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no token secret" in lines[0], done.stderr
    assert str((tmp_path / "data" / "jwt_secret").resolve()) in lines[0]
    assert not (tmp_path / "data").exists()  # nothing was created
    made = manor("token", "pat", "--create-secret", MANOR_DATA_DIR=str(tmp_path / "data"))
    secret = (tmp_path / "data" / "jwt_secret").read_text().strip()
    assert verify_token(secret, made.stdout.strip()) == "pat"
    again = manor("token", "pat", MANOR_DATA_DIR=str(tmp_path / "data"))
    assert again.returncode == 0 and verify_token(secret, again.stdout.strip()) == "pat"


def test_ledger_verify_from_a_folder_without_a_store_refuses(tmp_path: Path) -> None:
    for command in (("ledger", "verify"), ("push-relay", "--dead-letters", "3")):
        done = manor(*command, MANOR_DATA_DIR=str(tmp_path / "data"))
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "no store" in lines[0], done.stderr
        assert str((tmp_path / "data" / "store").resolve()) in lines[0]
        assert not (tmp_path / "data").exists()  # no empty store was started


def test_serve_on_a_port_in_use_says_so_in_one_line_before_start_up(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started_s = time.monotonic()
        done = manor("serve", MANOR_PORT=str(port), MANOR_DATA_DIR=str(tmp_path / "data"))
        elapsed_s = time.monotonic() - started_s
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"manor serve: cannot listen on 127.0.0.1:{port}: ")
    assert "in use" in lines[0]
    assert not (tmp_path / "data").exists()  # no store, no secret: nothing was started
    assert elapsed_s < 10
