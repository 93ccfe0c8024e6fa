"""Targets of issue 10 and their verdicts: each figure beside its target, met or not met."""

from __future__ import annotations

import math
from typing import Any

OPS = {"<=": lambda value, target: value <= target, ">=": lambda value, target: value >= target}


def verdict(figure: str, value: float, op: str, target: float, unit: str = "") -> dict[str, Any]:
    """One target's line as JSON: a figure that could not be measured (NaN) is not met."""
    met = not math.isnan(value) and OPS[op](value, target)
    return {"figure": figure, "value": value, "op": op, "target": target, "unit": unit, "met": met}


def line(v: dict[str, Any]) -> str:
    unit = f" {v['unit']}" if v["unit"] else ""
    value = f"{v['value']:.3f}" if abs(v["value"]) < 10 else f"{v['value']:.1f}"
    target = f"{v['target']:g}"
    return (
        f"target {v['figure']:<44} {value:>10}{unit}  (target {v['op']} {target}{unit}): "
        f"{'met' if v['met'] else 'NOT MET'}"
    )


def signin_verdicts(phases: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The credit path (signin_always) and the steady path against echo of the same run."""
    out: list[dict[str, Any]] = []
    echo = phases.get("echo", {}).get("round_trips_per_s", 0.0)
    credit = phases.get("signin_always")
    if credit is not None:
        if echo:
            ratio = credit["round_trips_per_s"] / echo
            out.append(verdict("credit path / echo (rt/s)", ratio, ">=", 0.4))
        out.append(
            verdict(
                "credit path Redis CPU per sign-in",
                credit.get("redis_cpu_us_per_request", math.nan),
                "<=",
                25,
                "µs",
            )
        )
        out.append(
            verdict(
                "credit path Redis commands per sign-in",
                credit.get("redis_commands_per_request", math.nan),
                "<=",
                8,
            )
        )
        out.append(
            verdict(
                "credit path server CPU per sign-in",
                credit["server_cpu_us_per_request"],
                "<=",
                70,
                "µs",
            )
        )
    steady = phases.get("signin_steady")
    if steady is not None and echo:
        out.append(
            verdict("steady path / echo (rt/s)", steady["round_trips_per_s"] / echo, ">=", 0.65)
        )
    return out
