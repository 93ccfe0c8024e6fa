"""`manor serve` as its own OS process, for the tests that need a second process, a kill -9
or a store that dies under it: on a free port, ready once /readyz answers, stopped (killed
if it will not stop) at the end, and sent SIGTERM by Linux if pytest itself dies."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from server.store.embedded import free_port
from tests.live import SECRET

REPO = Path(__file__).resolve().parent.parent
READY_WAIT_S_MAX = 20.0
STOP_WAIT_S_MAX = 10.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class ServerProcess:
    port: int
    process: asyncio.subprocess.Process

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


def die_with_parent() -> None:
    """Runs in the child before exec: Linux sends it SIGTERM if pytest dies, even by -9."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@contextlib.asynccontextmanager
async def manor_serve(
    redis_url: str, data_dir: Path, settings: dict[str, str], log_file: Path | None = None
) -> AsyncIterator[ServerProcess]:
    """`manor serve` on `redis_url` with the tests' JWT secret and these MANOR_* settings;
    its output goes to `log_file` (else to the test's own)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANOR_")}
    env |= {
        "MANOR_REDIS_URL": redis_url,
        "MANOR_JWT_SECRET": SECRET,
        "MANOR_PORT": str(port),
        "MANOR_DATA_DIR": str(data_dir),
        **settings,
    }
    log = log_file.open("wb") if log_file is not None else None
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        "serve",
        "--log-level",
        "warning",
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=log,
        preexec_fn=die_with_parent,
    )
    server = ServerProcess(port, process)
    try:
        deadline = time.monotonic() + READY_WAIT_S_MAX
        async with httpx.AsyncClient() as http:
            while True:
                assert process.returncode is None, "manor serve exited"
                assert time.monotonic() < deadline, "manor serve did not become ready"
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{server.http}/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield server
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_WAIT_S_MAX)
            except TimeoutError:
                process.kill()
                await process.wait()
        if log is not None:
            log.close()
