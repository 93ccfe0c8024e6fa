"""The ops of WebSocket API v1, one module per noun; `dispatch_table` joins them.

Also the triggers that reach offline players. May import the pipeline, the ledger and the
store; never transports, the HTTP APIs or jobs.
"""

from __future__ import annotations

from server.ops import account, draw, farm, friends, growth, mall, tasks, visit
from server.pipeline import Op
from server.settings import Settings


def dispatch_table(settings: Settings) -> dict[str, Op]:
    table: dict[str, Op] = {}
    for module in (account, farm, friends, visit, tasks, mall, growth, draw):
        for name, op in module.ops(settings).items():
            assert name not in table, f"op {name} defined twice"
            table[name] = op
    return table
