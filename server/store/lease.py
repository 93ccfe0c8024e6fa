"""Leases: a scheduled job runs on one server process at a time."""

from __future__ import annotations

import uuid

from server.store.store import Store


def lease_key(name: str) -> str:
    return f"m:{{lease}}:{name}"


class Leases:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.holder = uuid.uuid4().hex

    async def hold(self, name: str, ttl_ms: int) -> bool:
        """True when this process holds `name` for the next `ttl_ms` (taken or renewed)."""
        got = await self.store.script("lease", [lease_key(name)], [self.holder, ttl_ms])
        return bool(got)
