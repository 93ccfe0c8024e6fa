"""GET /v1/admin/system: the figures the operators' console polls, as JSON.

The same sources as /metrics: this process's sockets, request counters (by op and outcome,
since start) and timer loop; store-wide coins minted and burned per source, timers pending
and outbox orders in flight (one batch over every bucket); and the push triggers: the
backlog the push gateway's group has not acknowledged, and the dead letters kept. The
figures are cumulative: the console turns them into rates and plots by polling (it keeps
the series itself, a bounded number of points), so the server keeps no history.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from server.jobs.dead_letters import dead_letter_stream, relay_streams
from server.jobs.relay import GROUP
from server.metrics import read_store
from server.store.store import Arg, Store


async def trigger_backlog(store: Store) -> dict[str, int]:
    """Over every trigger stream (each partition, and the legacy one): `entries` kept,
    `backlog` not yet acknowledged by the push gateway's group (all of a stream's entries
    when no group reads it yet), and `dead_letters` parked."""
    streams = [name for name, _ in relay_streams()]
    lengths = await store.call_many(
        *[("XLEN", s) for s in streams], *[("XLEN", dead_letter_stream(s)) for s in streams]
    )
    entries = [int(n) for n in lengths[: len(streams)]]
    dead = sum(int(n) for n in lengths[len(streams) :])
    present = [s for s, n in zip(streams, entries, strict=True) if n]
    commands: list[tuple[Arg, ...]] = [("XINFO", "GROUPS", s) for s in present]
    groups = await store.call_many(*commands) if commands else []
    backlog = 0
    for stream_entries, infos in zip([n for n in entries if n], groups, strict=True):
        ours = [g for g in infos if g.get(b"name") == GROUP.encode()]
        if not ours:
            backlog += stream_entries
            continue
        lag = ours[0].get(b"lag")
        # lag is unknown (nil) after entries were trimmed or deleted: count them all then
        unread = stream_entries if lag is None else int(lag)
        backlog += unread + int(ours[0].get(b"pending") or 0)
    return {"entries": sum(entries), "backlog": backlog, "dead_letters": dead}


async def system(request: Request) -> JSONResponse:
    manor: Any = request.app.state.manor
    minted, burned, pending, in_flight = await read_store(manor.store)
    triggers = await trigger_backlog(manor.store)
    return JSONResponse(
        {
            "now_ms": manor.clock.now_ms(),
            "rules_version": manor.rulebook.rules.version,
            "sockets": manor.sockets,
            "requests": manor.metrics.request_counts(),
            "coins": {"minted": minted, "burned": burned},
            "timers": {
                "pending": pending,
                "late_ms_max": manor.timers.late_ms_max,
                "fired": manor.timers.fired_total,
            },
            "outbox_in_flight": in_flight,
            "triggers": triggers,
        }
    )
