"""The phases of `make bench` beyond the round-trip ones, one module each (issue 10).

Each module has `add_options(parser)`, `run(args) -> dict` (its figures, with a
`verdicts` list: bench/verdict.py) and `lines(result) -> list[str]` (what it prints).
"""

from __future__ import annotations

import argparse
import traceback
from types import ModuleType
from typing import Any

from bench import connect_wave, fanout, idle_sockets, journal_bytes, timer_claims

MODULES: dict[str, ModuleType] = {
    "journal_bytes": journal_bytes,
    "connect_wave": connect_wave,
    "idle_sockets": idle_sockets,
    "fanout": fanout,
    "timers": timer_claims,
}


def add_options(parser: argparse.ArgumentParser) -> None:
    for module in MODULES.values():
        module.add_options(parser)


def run(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """A phase's figures; a phase that fails is reported (and its targets not met), and the
    run goes on with the next one."""
    try:
        result: dict[str, Any] = MODULES[name].run(args)
    except Exception as exc:  # noqa: BLE001 - the other phases still run and print
        return {"failed": repr(exc), "traceback": traceback.format_exc(), "verdicts": []}
    return result


def lines(name: str, result: dict[str, Any]) -> list[str]:
    if "failed" in result:
        return [f"  FAILED: {result['failed']}", *result["traceback"].splitlines()[-6:]]
    out: list[str] = MODULES[name].lines(result)
    return out
