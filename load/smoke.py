"""A short load smoke: real server, locust headless, then `manor ledger verify`.

    python -m load.smoke [--users 20] [--spawn-rate 10] [--run-time-s 15]   (make load-smoke)

Starts `manor serve` on a free loopback port with a fresh data dir, MANOR_DEV_CLOCK=1 and
a random MANOR_PLATFORM_KEY, runs load/locustfile.py in two locust subprocesses one after
the other (DailyPlayer with MidnightSpike, then StealStorm), stops the server, verifies
the ledger and the outbox on the same data dir, and prints a summary. Exit status 0 only
when locust recorded no failure, the server logged no error, the ledger and the outbox
audit verify, and the storm's thefts show up in the outbox audit.
Locust runs in its own process so that gevent never monkey-patches the caller (pytest).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.store.embedded import free_port

REPO = Path(__file__).resolve().parent.parent
LOCUSTFILE = REPO / "load" / "locustfile.py"
READY_WAIT_S_MAX = 20.0
STOP_WAIT_S_MAX = 10.0
LOCUST_SLACK_S = 20.0  # locust start-up and shut-down on top of --run-time
VERIFY_WAIT_S_MAX = 30.0
SOCKETS_DRAIN_S_MAX = 3.0
SERVER_LOG_LINES_SHOWN = 30
SERVER_ERROR = re.compile(r"Traceback|ERROR|op failed", re.IGNORECASE)
VERIFY_LINE = re.compile(r"(\d+) players, (\d+) entries")
OUTBOX_LINE = re.compile(r"outbox (\w+): ordered (-?\d+), credited (-?\d+), in flight (-?\d+)")
DAY_CLASSES = ("DailyPlayer", "MidnightSpike")
STORM_CLASSES = ("StealStorm",)


@dataclass(frozen=True, slots=True)
class OpStats:
    name: str
    requests: int
    failures: int
    p50_ms: float
    p95_ms: float
    rps: float


@dataclass
class SmokeResult:
    locust_exit: int = -1
    ops: list[OpStats] = field(default_factory=list)
    total: OpStats | None = None
    failure_lines: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)
    ledger_ok: bool = False
    ledger_players: int = 0
    ledger_entries: int = 0
    ledger_output: str = ""
    # per source, from the outbox audit: (ordered, credited, in flight)
    outbox: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    storm: dict[str, Any] | None = None  # the StealStorm report; None: no storm ran
    storm_wanted: bool = False
    sockets_left: int = -1  # what /readyz counts once every client has gone
    error: str = ""  # the run could not happen (server never ready, ...)

    @property
    def failures(self) -> int:
        return self.total.failures if self.total else 0

    @property
    def ok(self) -> bool:
        return (
            not self.error
            and self.total is not None
            and self.total.requests > 0
            and self.failures == 0
            and self.locust_exit == 0
            and not self.server_errors
            and self.ledger_ok
            and self.sockets_left == 0
            and not self.storm_problems
        )

    @property
    def storm_problems(self) -> list[str]:
        """The storm's thefts against the outbox audit (a fresh store: the storm's alone)."""
        if not self.storm_wanted:
            return []
        if self.storm is None:
            return ["the steal storm wrote no report"]
        problems = []
        taken = int(self.storm["coins_taken_from_crops"])
        if self.storm["outcomes"].get("ok", 0) < 1:
            problems.append("no steal succeeded")
        if "steal" not in self.outbox:
            problems.append("ledger verify printed no outbox audit for steal")
        elif self.outbox["steal"][0] != taken:
            ordered = self.outbox["steal"][0]
            problems.append(f"outbox ordered {ordered} stolen coins, crops lost {taken}")
        return problems


def _env(work: Path, port: int, spike_lead_s: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANOR_")}
    env.update(
        MANOR_HOST="127.0.0.1",
        MANOR_PORT=str(port),
        MANOR_DATA_DIR=str(work / "data"),
        MANOR_JWT_SECRET=secrets.token_urlsafe(32),
        MANOR_PLATFORM_KEY=secrets.token_urlsafe(32),
        MANOR_DEV_CLOCK="1",
        MANOR_LOAD_SPIKE_LEAD_S=str(spike_lead_s),
        MANOR_LOAD_STORM_REPORT=str(work / "storm.json"),
        PYTHONUNBUFFERED="1",
    )
    if os.environ.get("MANOR_RULES"):
        env["MANOR_RULES"] = os.environ["MANOR_RULES"]
    return env


def _wait_ready(base_url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_WAIT_S_MAX
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"manor serve exited with {server.returncode} before /readyz")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(base_url + "/readyz", timeout=1.0) as response,
        ):
            if json.loads(response.read()).get("ok"):
                return
        time.sleep(0.1)
    raise RuntimeError(f"manor serve did not answer /readyz within {READY_WAIT_S_MAX:.0f} s")


def _sockets_left(base_url: str) -> int:
    """Open sockets the server still counts after locust exited (-1: no answer)."""
    left = -1
    deadline = time.monotonic() + SOCKETS_DRAIN_S_MAX
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base_url + "/readyz", timeout=1.0) as response:
                left = int(json.loads(response.read()).get("sockets", -1))
        except OSError:
            left = -1
        if left == 0:
            return 0
        time.sleep(0.1)
    return left


def _stop(server: subprocess.Popen[bytes]) -> None:
    """Ctrl-C (uvicorn's clean shutdown), then kill whatever is left of its process group.

    The group sweep matters: `manor serve` starts the embedded store as a child, and a
    server killed the hard way would leave it running.
    """
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(STOP_WAIT_S_MAX)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)  # its own session: only what it started


@contextlib.contextmanager
def running_server(env: dict[str, str], log_path: Path) -> Iterator[str]:
    base_url = f"http://127.0.0.1:{env['MANOR_PORT']}"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--log-level", "warning"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_ready(base_url, server)
            yield base_url
        finally:
            _stop(server)


def _run_locust(
    env: dict[str, str],
    base_url: str,
    csv_prefix: Path,
    classes: tuple[str, ...],
    users: int,
    spawn_rate: int,
    run_s: int,
) -> int:
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--users",
        str(users),
        "--spawn-rate",
        str(spawn_rate),
        "--run-time",
        f"{run_s}s",
        "--stop-timeout",
        "2",
        "--host",
        base_url,
        "--csv",
        str(csv_prefix),
        "--json-file",
        str(csv_prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
        *classes,
    ]
    try:
        done = subprocess.run(
            command, cwd=REPO, env=env, timeout=run_s + LOCUST_SLACK_S, check=False
        )
    except subprocess.TimeoutExpired:
        print(f"load smoke: locust ran past {run_s + LOCUST_SLACK_S:.0f} s", file=sys.stderr)
        return -1
    return done.returncode


def _percentile_ms(response_times: dict[int, int], fraction: float) -> float:
    """Locust keeps response times rounded into buckets: the bucket holding `fraction`."""
    total = sum(response_times.values())
    seen = 0
    for ms in sorted(response_times):
        seen += response_times[ms]
        if seen >= fraction * total:
            return float(ms)
    return 0.0


def _op_stats(name: str, entries: list[dict[str, Any]], duration_s: float) -> OpStats:
    times: dict[int, int] = {}
    for entry in entries:
        for ms, count in entry["response_times"].items():
            times[int(float(ms))] = times.get(int(float(ms)), 0) + count
    requests = sum(e["num_requests"] for e in entries)
    return OpStats(
        name=name,
        requests=requests,
        failures=sum(e["num_failures"] for e in entries),
        p50_ms=_percentile_ms(times, 0.50),
        p95_ms=_percentile_ms(times, 0.95),
        rps=requests / duration_s,
    )


def _stats(json_prefixes: list[Path]) -> tuple[list[OpStats], OpStats | None]:
    """Per op and overall, from locust's final JSON (its CSV lags up to a second)."""
    entries: list[dict[str, Any]] = []
    for prefix in json_prefixes:
        path = Path(f"{prefix}.json")
        if path.exists():
            entries += json.loads(path.read_text())
    if not entries:
        return [], None
    started_s = min(e["start_time"] for e in entries)
    last_s = max(e["last_request_timestamp"] or started_s for e in entries)
    duration_s = max(last_s - started_s, 1.0)  # rps over the whole run, as locust's total
    by_name: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_name.setdefault(str(entry["name"]), []).append(entry)
    ops = [_op_stats(name, by_name[name], duration_s) for name in sorted(by_name)]
    return ops, _op_stats("all", entries, duration_s)


def _failures(csv_prefixes: list[Path]) -> list[str]:
    lines: list[str] = []
    for prefix in csv_prefixes:
        path = Path(f"{prefix}_failures.csv")
        if path.exists():
            with path.open(newline="") as handle:
                lines += [
                    f"{row['Occurrences']}x {row['Name']}: {row['Error']}"
                    for row in csv.DictReader(handle)
                ]
    return lines


def ledger_verify(env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """`manor ledger verify` against the store `env` names (TimeoutExpired past timeout_s)."""
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "ledger", "verify"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def _verify(env: dict[str, str], result: SmokeResult) -> None:
    try:
        done = ledger_verify(env, VERIFY_WAIT_S_MAX)
    except subprocess.TimeoutExpired:
        result.ledger_output = f"ledger verify ran past {VERIFY_WAIT_S_MAX:.0f} s"
        return
    result.ledger_output = (done.stdout + done.stderr).strip()
    result.ledger_ok = done.returncode == 0
    found = VERIFY_LINE.search(done.stdout)
    if found:
        result.ledger_players, result.ledger_entries = int(found[1]), int(found[2])
    for line in OUTBOX_LINE.finditer(done.stdout):
        result.outbox[line[1]] = (int(line[2]), int(line[3]), int(line[4]))


def run_smoke(
    users: int = 20,
    spawn_rate: int = 10,
    run_time_s: int = 15,
    spike_lead_s: float = 5.0,
    keep_dir: Path | None = None,
    steal_users: int = 30,
    steal_run_time_s: int = 5,
) -> SmokeResult:
    """Server up, locust (day, then storm), server down, ledger verify. Never leaves a
    process behind. steal_users = 0 skips the storm."""
    result = SmokeResult(storm_wanted=steal_users > 0)
    with tempfile.TemporaryDirectory(prefix="manor-load-") as tmp:
        work = keep_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        env = _env(work, free_port(), spike_lead_s)
        log_path = work / "server.log"
        prefixes = [work / "locust"]
        try:
            with running_server(env, log_path) as base_url:
                result.locust_exit = _run_locust(
                    env, base_url, prefixes[0], DAY_CLASSES, users, spawn_rate, run_time_s
                )
                if steal_users > 0 and result.locust_exit == 0:
                    prefixes.append(work / "locust-storm")
                    result.locust_exit = _run_locust(
                        env,
                        base_url,
                        prefixes[1],
                        STORM_CLASSES,
                        steal_users,
                        steal_users,  # all thieves at once
                        steal_run_time_s,
                    )
                result.sockets_left = _sockets_left(base_url)
        except RuntimeError as exc:
            result.error = str(exc)
        finally:
            if log_path.exists():
                lines = log_path.read_text(errors="replace").splitlines()
                result.server_errors = [line for line in lines if SERVER_ERROR.search(line)]
        result.ops, result.total = _stats(prefixes)
        result.failure_lines = _failures(prefixes)
        report = Path(env["MANOR_LOAD_STORM_REPORT"])
        if report.exists():
            result.storm = json.loads(report.read_text())
        _verify(env, result)
        if not result.ok and log_path.exists():
            tail = log_path.read_text(errors="replace").splitlines()[-SERVER_LOG_LINES_SHOWN:]
            print("server log (tail):\n  " + "\n  ".join(tail), file=sys.stderr)
    return result


def summary(result: SmokeResult, elapsed_s: float) -> str:
    lines = [f"{'op':<20} {'reqs':>6} {'fails':>6} {'p50 ms':>7} {'p95 ms':>7} {'rps':>7}"]
    for op in [*result.ops, *([result.total] if result.total else [])]:
        lines.append(
            f"{op.name:<20} {op.requests:>6} {op.failures:>6} "
            f"{op.p50_ms:>7.0f} {op.p95_ms:>7.0f} {op.rps:>7.1f}"
        )
    lines += [f"error: {result.error}"] if result.error else []
    lines += [f"failure: {line}" for line in result.failure_lines]
    lines += [f"server: {line}" for line in result.server_errors[:SERVER_LOG_LINES_SHOWN]]
    if result.storm is not None:
        outcomes = ", ".join(f"{code} {n}" for code, n in result.storm["outcomes"].items())
        lines.append(
            f"steal storm: {result.storm['plots']} ripe plots; steals: {outcomes}; "
            f"coins replied {result.storm['coins_replied']}, "
            f"taken from crops {result.storm['coins_taken_from_crops']}"
        )
    lines += [f"storm: {problem}" for problem in result.storm_problems]
    lines.append(result.ledger_output or "ledger verify: did not run")
    lines.append(
        f"load smoke: {'ok' if result.ok else 'FAILED'} in {elapsed_s:.1f} s "
        f"(locust exit {result.locust_exit}, {result.failures} failures, "
        f"{len(result.server_errors)} server errors, {result.sockets_left} sockets left open, "
        f"ledger {result.ledger_entries} entries)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load.smoke", description=__doc__)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--spawn-rate", type=int, default=10)
    parser.add_argument("--run-time-s", type=int, default=15)
    parser.add_argument(
        "--spike-lead-s", type=float, default=5.0, help="seconds from start to midnight"
    )
    parser.add_argument("--keep-dir", type=Path, help="keep data, logs and CSVs here")
    parser.add_argument("--steal-users", type=int, default=30, help="thieves; 0: no storm")
    parser.add_argument("--steal-run-time-s", type=int, default=5)
    args = parser.parse_args(argv)
    started_s = time.monotonic()
    result = run_smoke(
        args.users,
        args.spawn_rate,
        args.run_time_s,
        args.spike_lead_s,
        args.keep_dir,
        args.steal_users,
        args.steal_run_time_s,
    )
    print(summary(result, time.monotonic() - started_s))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
