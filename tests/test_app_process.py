"""What the app sets in its process while it serves, and gives back when it stops."""

from __future__ import annotations

import gc
from pathlib import Path

from server.app import GC_YOUNG_MAX
from server.clock import FrozenClock
from server.store.embedded import EmbeddedStore
from tests.live import serve


async def test_the_collector_is_tuned_while_the_app_serves(
    redis_server: EmbeddedStore, tmp_path: Path, clock: FrozenClock
) -> None:
    """Startup's objects frozen out of the collections, a larger young generation; both
    undone at shutdown (tests start many apps in one process)."""
    before = gc.get_threshold()
    gc.unfreeze()
    async with serve(redis_server.url, tmp_path, clock):
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (GC_YOUNG_MAX, *before[1:])
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
