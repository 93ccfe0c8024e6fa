"""Targets of issue 10 and their verdicts: each figure beside its target, met or not met,
on the store it was measured on (one store or the cluster's shards: bench/stores.py)."""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass
from typing import Any

from bench.stores import CLUSTER_STORE, ONE_STORE, StoreShape, label

OPS = {"<=": lambda value, target: value <= target, ">=": lambda value, target: value >= target}
# The round-trip phases of each store: (credit path, steady path).
SIGNIN_PATHS: tuple[tuple[str, str, StoreShape], ...] = (
    ("signin_always", "signin_steady", ONE_STORE),
    ("cluster_always", "cluster_steady", CLUSTER_STORE),
)


def verdict(
    figure: str,
    value: float,
    op: str,
    target: float,
    unit: str = "",
    store: StoreShape = ONE_STORE,
    valid: bool = True,
) -> dict[str, Any]:
    """One target's line as JSON: a figure that could not be measured (NaN), or one from a
    run that went wrong (`valid` false: a failed verify, timers left unfired), is not met."""
    met = valid and not math.isnan(value) and OPS[op](value, target)
    return {
        "figure": figure,
        "store": label(store),
        "value": value,
        "op": op,
        "target": target,
        "unit": unit,
        "met": met,
    }


@dataclass(frozen=True)
class Target:
    """A phase's target of issue 10: `of()` is its verdict for a figure on a store."""

    figure: str
    op: str
    target: float
    unit: str = ""

    def of(self, value: float, store: StoreShape, valid: bool = True) -> dict[str, Any]:
        return verdict(self.figure, value, self.op, self.target, self.unit, store, valid)


def line(v: dict[str, Any]) -> str:
    unit = f" {v['unit']}" if v["unit"] else ""
    value = f"{v['value']:.3f}" if abs(v["value"]) < 10 else f"{v['value']:.1f}"
    target = f"{v['target']:g}"
    text = (
        f"target {v['figure']:<48} {v['store']:<9} {value:>10}{unit}  "
        f"(target {v['op']} {target}{unit}): {'met' if v['met'] else 'NOT MET'}"
    )
    cores = v.get("cores")
    if cores:
        text += (
            f"\n       the target at this CPU per op needs {cores['needed']:.2f} of the "
            f"{cores['machine']} cores busy; the run kept {cores['used']:.2f} busy, its "
            f"baseline {cores['base_used']:.2f}"
        )
        if "store_bound" in cores:
            text += (
                f"\n       its busiest store thread was in its cycles {cores['store_busy']:.0%} of"
                f" the window: never idle, it would carry {cores['store_bound']:.3f} of echo"
            )
    if v.get("detail"):
        text += f"\n       {v['detail']}"
    return text


def cores_needed(target: float, base_per_s: float, cpu_us_per_op: float) -> float:
    """The cores a path must keep busy to run at `target` times its baseline's rate, at
    the CPU per op it was measured at (every process's: servers, stores, client). Over
    the machine's cores, the target cannot be met by this code on this machine; near
    them, only by a run that leaves no core idle."""
    return target * base_per_s * cpu_us_per_op * 1e-6


def with_cores(
    v: dict[str, Any], phase: dict[str, Any], echo: dict[str, Any], per_op: str
) -> dict[str, Any]:
    """A ratio's verdict with the cores its target needs (cores_needed, over each run's
    echo run, the median over the rounds) beside those the path's runs kept busy."""
    runs = phase.get("rounds") or [phase]
    needed = statistics.median(
        cores_needed(
            v["target"],
            run.get("echo_round_trips_per_s") or echo["round_trips_per_s"],
            run.get(per_op, math.nan),
        )
        for run in runs
    )
    if math.isnan(needed):
        return v
    cores = {
        "needed": needed,
        "used": figure(phase, "cores_used"),
        "base_used": figure(echo, "cores_used"),
        "machine": os.cpu_count(),
    }
    bounds = [store_bound(run, run.get("echo_round_trips_per_s") or echo) for run in runs]
    if not any(math.isnan(b) for b in bounds):
        cores["store_bound"] = statistics.median(bounds)
        cores["store_busy"] = statistics.median(busiest_store(run) for run in runs)
    return {**v, "cores": cores}


def busiest_store(run: dict[str, Any]) -> float:
    """The share of the window the busiest primary's thread spent inside its event loop's
    cycles (NaN where the engine keeps no such counter)."""
    shares = [node.get("loop_busy_fraction", math.nan) for node in run.get("redis_nodes", [])]
    return max(shares) if shares and not any(math.isnan(s) for s in shares) else math.nan


def store_bound(run: dict[str, Any], echo: float | dict[str, Any]) -> float:
    """The path's rate over echo's that its busiest store thread would carry never idle,
    at the cost in cycles a request had in the run: the bound of the serial point (a
    primary runs one cycle at a time; with appendfsync always each ends in its fsync)."""
    echo_per_s = echo if isinstance(echo, float) else echo["round_trips_per_s"]
    return float(run["round_trips_per_s"] / busiest_store(run) / echo_per_s)


def figure(phase: dict[str, Any], key: str) -> float:
    """A round-trip phase's figure: the median over its rounds when it ran in rounds."""
    rounds = phase.get("rounds")
    if rounds:
        return float(statistics.median(r.get(key, math.nan) for r in rounds))
    return float(phase.get(key, math.nan))


def rate_ratio(phase: dict[str, Any], base: dict[str, Any]) -> float:
    """rt/s of `phase` over `base`'s: with rounds on both, the median of each round's ratio
    (a round runs every round-trip phase once, so its two phases ran minutes apart at most,
    not a whole run apart)."""
    key = "round_trips_per_s"
    rounds, base_rounds = phase.get("rounds"), base.get("rounds")
    if rounds and base_rounds and len(rounds) == len(base_rounds):
        ratios = [
            r[key] / b[key] if b[key] else math.nan
            for r, b in zip(rounds, base_rounds, strict=True)
        ]
        return float(statistics.median(ratios))
    return phase[key] / base[key] if base.get(key) else math.nan


def over_echo(phase: dict[str, Any], echo: dict[str, Any]) -> float:
    """rt/s of a path over echo's: with each run paired with the echo run just before it
    (`echo_round_trips_per_s`, bench/ws_signin.py round_order), the median of those
    ratios; else rate_ratio over the echo phase."""
    key = "round_trips_per_s"
    runs = phase.get("rounds") or [phase]
    if all(run.get("echo_round_trips_per_s") for run in runs):
        return float(statistics.median(run[key] / run["echo_round_trips_per_s"] for run in runs))
    return rate_ratio(phase, echo)


def with_loop(v: dict[str, Any], phase: dict[str, Any]) -> dict[str, Any]:
    """Redis's CPU verdict with what of it ran commands (the store's event loop, where the
    engine counts it: bench/ws_signin.py store_loop), the rest being its cycles' own."""
    commands_us = figure(phase, "loop_commands_us_per_credit")
    if math.isnan(commands_us):
        return v
    return {
        **v,
        "detail": f"of which running commands {commands_us:.1f} µs; the rest in the store's"
        f" cycles ({figure(phase, 'loop_credits_per_cycle'):.1f} credits a cycle): the AOF's"
        " write and fsync, socket reads and writes",
    }


def signin_verdicts(phases: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The credit path and the steady path of each store against echo of the same run."""
    out: list[dict[str, Any]] = []
    echo = phases.get("echo")
    for credit_name, steady_name, store in SIGNIN_PATHS:
        credit = phases.get(credit_name)
        if credit is not None:
            if echo is not None:
                ratio = over_echo(credit, echo)
                v = verdict("credit path / echo (rt/s)", ratio, ">=", 0.4, "", store)
                out.append(with_cores(v, credit, echo, "cpu_us_per_credit"))
            for name, key, target, unit in (
                ("credit path Redis CPU per credited sign-in", "redis_cpu_us_per_credit", 25, "µs"),
                (
                    "credit path Redis commands per credited sign-in",
                    "redis_commands_per_credit",
                    8,
                    "",
                ),
                (
                    "credit path server CPU per credited sign-in",
                    "server_cpu_us_per_credit",
                    70,
                    "µs",
                ),
            ):
                v = verdict(name, figure(credit, key), "<=", target, unit, store)
                out.append(with_loop(v, credit) if key == "redis_cpu_us_per_credit" else v)
        steady = phases.get(steady_name)
        if steady is not None and echo is not None:
            ratio = over_echo(steady, echo)
            v = verdict("steady path / echo (rt/s)", ratio, ">=", 0.65, "", store)
            out.append(with_cores(v, steady, echo, "cpu_us_per_request"))
    return out
