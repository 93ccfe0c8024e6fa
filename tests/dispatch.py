"""Ops run straight through a live app's dispatcher: no socket, so no rate limit, and many
ops of many players can run at once in the test's event loop."""

from __future__ import annotations

import itertools
from typing import Any

from server.pipeline import OpError
from server.protocol import Request
from server.store.keys import PlayerKeys
from tests.live import Live

_ids = itertools.count(1)


async def op(live: Live, actor: str, name: str, **args: Any) -> Any:
    """Run op `name` as `actor`: its result, or the error code of an OpError (a string)."""
    request = Request(f"t-{next(_ids)}", name, args)
    try:
        return await live.manor.dispatcher.handle(PlayerKeys(actor), request)
    except OpError as exc:
        return exc.code
