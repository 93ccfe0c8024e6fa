"""Client processes of the socket phases: many sockets need several processes and file
descriptors, and a phase often needs them to hold still while it measures the server.

A client process prints one JSON line `{"ready": ...}` once its sockets are open, waits for
a line on stdin (`go`), does its work, and prints its JSON report as the last line.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import subprocess
import sys
import time
from typing import Any

from bench.procs import REPO, die_with_parent

FDS_SPARE = 64  # files, Redis links and pipes beside the sockets
STOP_WAIT_S = 10.0


def raise_fd_limit(sockets: int) -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (no root needed); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = sockets + FDS_SPARE
    if soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def rss_kb(pid: int) -> int:
    """Resident set size of `pid` in KiB (VmRSS of /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for row in status:
            if row.startswith("VmRSS:"):
                return int(row.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def split(count: int, parts: int) -> list[range]:
    """`range(count)` cut into `parts` contiguous slices (the first ones one longer)."""
    base, extra = divmod(count, parts)
    out, start = [], 0
    for part in range(parts):
        size = base + (part < extra)
        out.append(range(start, start + size))
        start += size
    return [r for r in out if len(r)]


class Clients:
    """`python -m <module> <options...>` once per slice of players, all started at once."""

    def __init__(self, module: str, options: list[list[str]]) -> None:
        self.processes = [
            subprocess.Popen(
                [sys.executable, "-m", module, *extra],
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - it only sets the death signal
            )
            for extra in options
        ]
        self._buffers = [b""] * len(self.processes)

    def _line(self, index: int, deadline_s: float) -> dict[str, Any]:
        """The next JSON line of client `index`, or an error past the deadline."""
        process = self.processes[index]
        assert process.stdout is not None
        fd = process.stdout.fileno()
        while b"\n" not in self._buffers[index]:
            left_s = deadline_s - time.monotonic()
            if left_s <= 0:
                raise TimeoutError(f"client {index} said nothing in time")
            readable, _, _ = select.select([fd], [], [], left_s)
            if readable:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    process.wait(STOP_WAIT_S)
                    raise RuntimeError(f"client {index} exited with {process.returncode}")
                self._buffers[index] += chunk
        raw, _, self._buffers[index] = self._buffers[index].partition(b"\n")
        got: dict[str, Any] = json.loads(raw)
        return got

    def ready(self, timeout_s: float) -> list[dict[str, Any]]:
        """Each client's `ready` line (its sockets are open)."""
        deadline_s = time.monotonic() + timeout_s
        return [self._line(i, deadline_s) for i in range(len(self.processes))]

    def go(self, message: str = "go") -> None:
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write(message.encode() + b"\n")
            process.stdin.flush()

    def reports(self, timeout_s: float) -> list[dict[str, Any]]:
        deadline_s = time.monotonic() + timeout_s
        return [self._line(i, deadline_s) for i in range(len(self.processes))]

    def stop(self) -> None:
        for process in self.processes:
            if process.stdin is not None and not process.stdin.closed:
                with contextlib.suppress(BrokenPipeError):
                    process.stdin.close()
        for process in self.processes:
            try:
                process.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()

    def __enter__(self) -> Clients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for_line(stream: Any) -> str:
    """In a client: block until the driver writes a line (or closes stdin: "")."""
    return str(stream.readline()).strip()
