"""Child processes of the bench: started, waited for, and always stopped."""

from __future__ import annotations

import contextlib
import ctypes
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LISTEN_WAIT_S_MAX = 20.0
STOP_WAIT_S_MAX = 10.0
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Runs in the child before exec: Linux sends it SIGTERM when the bench dies, even by -9."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def exit_on_sigterm() -> None:
    """`kill <bench>` unwinds through every `finally`, so no server is left behind."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    """uvicorn binds only after the lifespan started, so a connect means ready."""
    deadline_s = time.monotonic() + LISTEN_WAIT_S_MAX
    while time.monotonic() < deadline_s:
        if process.poll() is not None:
            raise RuntimeError(f"bench server exited at start with status {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"bench server not listening on port {port} after {LISTEN_WAIT_S_MAX} s")


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGINT to each (uvicorn's graceful shutdown, lifespan included), then wait for all."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        process.send_signal(signal.SIGINT)
    deadline_s = time.monotonic() + STOP_WAIT_S_MAX
    for process in running:
        try:
            process.wait(max(0.0, deadline_s - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def bench_servers(
    app: str, options: dict[int, list[str]]
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """A server process per port (`options`: port -> its options), all started before any is
    waited for, and stopped together."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for port, extra in options.items():
            command = [sys.executable, "-m", "bench.serve", app, "--port", str(port), *extra]
            processes.append(
                subprocess.Popen(
                    command,
                    cwd=REPO,
                    stdin=subprocess.DEVNULL,
                    preexec_fn=die_with_parent,  # noqa: PLW1509 - it only sets the death signal
                )
            )
        for port, process in zip(options, processes, strict=True):
            wait_listening(port, process)
        yield processes
    finally:
        stop(processes)


@contextlib.contextmanager
def bench_server(app: str, port: int, options: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    with bench_servers(app, {port: options}) as processes:
        yield processes[0]


def run_loadgen(options: list[str], timeout_s: float) -> dict[str, Any]:
    """The client in its own process (it shares the 2 cores with the server, not its GIL)."""
    command = [sys.executable, "-m", "bench.loadgen", *options]
    done = subprocess.run(
        command,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout_s,
        check=False,
        preexec_fn=die_with_parent,
    )
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed ({done.returncode}):\n{done.stderr.decode()[-3000:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report
