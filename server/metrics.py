"""Prometheus metrics, one CollectorRegistry per app (tests run several apps in a process).

Counted as they happen: requests per op and outcome ("ok" or the error code) and their
latency, for WebSocket ops and the platform and admin HTTP endpoints. Read at scrape time,
in one pipelined batch over every bucket: coins minted and burned (the bucket system
accounts), timers pending and outbox orders in flight; plus the process's sockets and its
timer loop's counters.
"""

from __future__ import annotations

import hmac
import json
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from server.store.keys import BUCKETS, outbox, sys_accounts, timers
from server.store.store import Arg, Store

UNKNOWN_OP = "_unknown"  # ops outside the table: one label, so cardinality stays bounded
REQUEST_SECONDS_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
BURN_ACCOUNTS = ("clawback",)  # besides sink:*: coins taken back by refunds


@dataclass
class Sample:
    """What the last scrape read."""

    sockets: int = 0
    minted: dict[str, int] = field(default_factory=dict)  # source -> coins issued (net)
    burned: dict[str, int] = field(default_factory=dict)  # sink -> coins removed (net)
    timers_pending: int = 0
    timers_late_ms_max: int = 0
    timers_fired: int = 0
    job_polls: dict[str, int] = field(default_factory=dict)  # job -> buckets read
    outbox_in_flight: int = 0


def coin_flows(accounts: Iterable[dict[bytes, bytes]]) -> tuple[dict[str, int], dict[str, int]]:
    """Sum the buckets' system accounts: a mint's balance is minus what it issued; a sink's
    (and clawback's) is what it took in."""
    minted: dict[str, int] = {}
    burned: dict[str, int] = {}
    for bucket in accounts:
        for raw_name, raw_value in bucket.items():
            name, value = raw_name.decode(), int(raw_value)
            if name.startswith("mint:"):
                source = name[5:]
                minted[source] = minted.get(source, 0) - value
            elif name.startswith("sink:"):
                sink = name[5:]
                burned[sink] = burned.get(sink, 0) + value
            elif name in BURN_ACCOUNTS:
                burned[name] = burned.get(name, 0) + value
    return minted, burned


async def read_store(store: Store) -> tuple[dict[str, int], dict[str, int], int, int]:
    """(minted, burned, timers pending, outbox in flight): one call_many over every bucket."""
    commands: list[tuple[Arg, ...]] = [("HGETALL", sys_accounts(b)) for b in range(BUCKETS)]
    commands += [("ZCARD", timers(b)) for b in range(BUCKETS)]
    commands += [("LLEN", outbox(b)) for b in range(BUCKETS)]
    replies = await store.call_many(*commands)
    minted, burned = coin_flows(replies[:BUCKETS])
    pending = sum(int(n) for n in replies[BUCKETS : 2 * BUCKETS])
    in_flight = sum(int(n) for n in replies[2 * BUCKETS :])
    return minted, burned, pending, in_flight


def labelled(name: str, documentation: str, label: str, counts: dict[str, int]) -> Metric:
    """A counter family with one sample per key of `counts`, labelled `label`."""
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, count in sorted(counts.items()):
        family.add_metric([key], count)
    return family


class _Sampled(Collector):
    def __init__(self) -> None:
        self.sample = Sample()

    def describe(self) -> Iterable[Metric]:
        return []  # collect() reads only the last sample: nothing to discover at register

    def collect(self) -> Iterator[Metric]:
        s = self.sample
        yield GaugeMetricFamily("manor_sockets", "WebSockets open on this process", s.sockets)
        yield labelled(
            "manor_coins_minted",
            "Coins issued per source, net of reversals (all buckets)",
            "source",
            s.minted,
        )
        yield labelled(
            "manor_coins_burned",
            "Coins removed per sink (redeem, expire, clawback), net of reversals",
            "sink",
            s.burned,
        )
        yield GaugeMetricFamily(
            "manor_timers_pending", "Timers armed in every bucket", s.timers_pending
        )
        yield GaugeMetricFamily(
            "manor_timers_late_ms_max",
            "Latest a timer fired after its due time on this process, in ms",
            s.timers_late_ms_max,
        )
        yield CounterMetricFamily(
            "manor_timers_fired", "Timers fired by this process", s.timers_fired
        )
        yield labelled(
            "manor_job_polls",
            "Store reads of the polling jobs on this process, one per bucket a pass, due or not",
            "job",
            s.job_polls,
        )
        yield GaugeMetricFamily(
            "manor_outbox_in_flight",
            "Cross-slot credit orders not yet completed",
            s.outbox_in_flight,
        )


class _OpStats:
    """One op's counts: plain ints, bumped on the event loop's thread only (no locks)."""

    __slots__ = ("buckets", "outcomes", "sum_s")

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}
        self.buckets = [0] * (len(REQUEST_SECONDS_BUCKETS) + 1)  # the last one is +Inf
        self.sum_s = 0.0


class _Requests(Collector):
    def __init__(self, stats: dict[str, _OpStats]) -> None:
        self.stats = stats

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        counts = CounterMetricFamily(
            "manor_requests",
            "Requests answered, by op and outcome (ok or the error code)",
            labels=["op", "outcome"],
        )
        seconds = HistogramMetricFamily(
            "manor_request_seconds", "Time to answer a request, by op", labels=["op"]
        )
        for op, stats in sorted(self.stats.items()):
            for outcome, n in sorted(stats.outcomes.items()):
                counts.add_metric([op, outcome], n)
            running, buckets = 0, []
            for bound, n in zip((*REQUEST_SECONDS_BUCKETS, "+Inf"), stats.buckets, strict=True):
                running += n
                buckets.append((str(bound), float(running)))
            seconds.add_metric([op], buckets, stats.sum_s)
        yield counts
        yield seconds


class Metrics:
    """This app's metrics. `observe` runs on every request: a dict lookup, two int bumps
    and a bisect (prometheus_client's locked Counter and Histogram cost ~1.1 us more)."""

    def __init__(self, ops: Iterable[str]) -> None:
        self.registry = CollectorRegistry()
        self.known = set(ops)
        self._stats: dict[str, _OpStats] = {}
        self._sampled = _Sampled()
        self.registry.register(_Requests(self._stats))
        self.registry.register(self._sampled)

    def observe(self, op: str, outcome: str, seconds: float) -> None:
        stats = self._stats.get(op)
        if stats is None:
            if op not in self.known:
                op = UNKNOWN_OP
            stats = self._stats.get(op)
            if stats is None:
                stats = self._stats[op] = _OpStats()
        outcomes = stats.outcomes
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        stats.buckets[bisect_left(REQUEST_SECONDS_BUCKETS, seconds)] += 1
        stats.sum_s += seconds

    def request_counts(self) -> dict[str, dict[str, int]]:
        """op -> outcome -> requests answered by this process since start (a copy)."""
        return {op: dict(stats.outcomes) for op, stats in self._stats.items()}

    def observe_reply(self, op: str, reply: dict[str, Any], seconds: float) -> None:
        """A WebSocket reply: `{"ok": true, ...}` or `{"ok": false, "error": {"code"...}}`."""
        self.observe(op, "ok" if reply["ok"] else reply["error"]["code"], seconds)

    async def render(self, manor: Any) -> bytes:
        minted, burned, pending, in_flight = await read_store(manor.store)
        self._sampled.sample = Sample(
            sockets=manor.sockets,
            minted=minted,
            burned=burned,
            timers_pending=pending,
            timers_late_ms_max=manor.timers.late_ms_max,
            timers_fired=manor.timers.fired_total,
            job_polls=job_polls(manor),
            outbox_in_flight=in_flight,
        )
        return generate_latest(self.registry)


def job_polls(manor: Any) -> dict[str, int]:
    """Store reads the polling jobs of this process made (Timers.polls, outbox.Relay)."""
    return {"timers": manor.timers.polls, "outbox": manor.relay.polls}


# --- HTTP --------------------------------------------------------------------------------------


def http_op(path: str) -> str:
    """`/v1/platform/orders/paid` -> `platform.orders.paid`; path parameters dropped."""
    return path.removeprefix("/v1/").split("/{")[0].replace("/", ".")


def _outcome(response: Response) -> str:
    if response.status_code < 400:
        return "ok"
    try:
        code = json.loads(bytes(response.body))["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP_{response.status_code}"
    return code if isinstance(code, str) else f"HTTP_{response.status_code}"


def instrument(routes: Sequence[BaseRoute], metrics: Metrics) -> list[BaseRoute]:
    """The same routes, each HTTP endpoint counted and timed under `http_op(path)`."""
    out: list[BaseRoute] = []
    for route in routes:
        if not isinstance(route, Route):
            out.append(route)
            continue
        op = http_op(route.path)
        metrics.known.add(op)
        out.append(
            Route(
                route.path,
                _timed(route.endpoint, op, metrics),
                methods=route.methods,
                name=route.name,
            )
        )
    return out


def _timed(endpoint: Any, op: str, metrics: Metrics) -> Any:
    async def handle(request: Request) -> Response:
        started_s = time.perf_counter()
        response: Response = await endpoint(request)
        metrics.observe(op, _outcome(response), time.perf_counter() - started_s)
        return response

    return handle


async def metrics_endpoint(request: Request) -> Response:
    """GET /metrics; with MANOR_METRICS_KEY set, only for `Authorization: Bearer <key>`."""
    manor = request.app.state.manor
    key: str = manor.settings.metrics_key
    if key:
        header = request.headers.get("authorization", "")
        given = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), key.encode()):
            return JSONResponse(
                {
                    "error": {
                        "code": "UNAUTHORIZED",
                        "message": "Authorization: Bearer <metrics key>",
                    }
                },
                status_code=401,
            )
    body = await manor.metrics.render(manor)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
