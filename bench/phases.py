"""The phases of `make bench` beyond the round-trip ones, one module each (issue 10).

Each module has `add_options(parser)`, `run(args, store) -> dict` (its figures, with a
`verdicts` list: bench/verdict.py), `lines(result) -> list[str]` (what it prints) and
`TARGET` (its target of issue 10, not met when the phase fails). Each runs twice: on one
store (`<phase>`) and, right after it, on the cluster of bench/stores.py
(`cluster_<phase>`): the same code, the other store.
"""

from __future__ import annotations

import argparse
import math
import traceback
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from bench import connect_wave, fanout, idle_sockets, journal_bytes, timer_claims
from bench.stores import CLUSTER_STORE, ONE_STORE, StoreKind

MODULES: dict[str, ModuleType] = {
    "journal_bytes": journal_bytes,
    "connect_wave": connect_wave,
    "idle_sockets": idle_sockets,
    "fanout": fanout,
    "timers": timer_claims,
}


@dataclass(frozen=True)
class ExtraPhase:
    module: ModuleType
    store: StoreKind


PHASES: dict[str, ExtraPhase] = {}
for _name, _module in MODULES.items():
    PHASES[_name] = ExtraPhase(_module, ONE_STORE)
    PHASES[f"cluster_{_name}"] = ExtraPhase(_module, CLUSTER_STORE)


def add_options(parser: argparse.ArgumentParser) -> None:
    for module in MODULES.values():
        module.add_options(parser)


def run(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """A phase's figures; a phase that fails is reported (and its targets not met), and the
    run goes on with the next one."""
    phase = PHASES[name]
    try:
        result: dict[str, Any] = phase.module.run(args, phase.store)
    except Exception as exc:  # noqa: BLE001 - the other phases still run and print
        return {
            "failed": repr(exc),
            "traceback": traceback.format_exc(),
            "verdicts": [phase.module.TARGET.of(math.nan, phase.store)],
        }
    return result


def lines(name: str, result: dict[str, Any]) -> list[str]:
    if "failed" in result:
        return [f"  FAILED: {result['failed']}", *result["traceback"].splitlines()[-6:]]
    out: list[str] = PHASES[name].module.lines(result)
    return out
