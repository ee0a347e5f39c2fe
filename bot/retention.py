"""Keeping the database from growing for ever: `Pruner` prunes at start and then every
PRUNE_INTERVAL seconds, with the horizons from `Settings` (RETENTION_DAYS for threads and reply
links, EVENT_RETENTION_HOURS for event claims; 0 keeps that kind for ever). The SQL, in bounded
batches, is `bot/store/retention.py`'s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from bot.background import Background
from bot.settings import Settings
from bot.store import Pruned, Store

log = logging.getLogger(__name__)

DAY = 86_400.0
HOUR = 3_600.0


class Pruner:
    """Owns the periodic prune task; `start` it once, `close` it at shutdown."""

    def __init__(
        self, settings: Settings, store: Store, clock: Callable[[], float] = time.time
    ) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock  # wall time: the rows carry wall-clock timestamps
        self._task = Background("retention")

    def start(self) -> None:
        self._task.spawn(self._run(), name="prune old rows")

    async def close(self) -> None:
        # A batch already running finishes (store writes are shielded); the loop stops there.
        await self._task.drain(0)

    async def prune(self) -> Pruned:
        """One prune with the configured horizons, as of now."""
        now = self._clock()
        days = self._settings.retention_days
        hours = self._settings.event_retention_hours
        pruned = await self._store.prune(
            threads_before=now - days * DAY if days else None,
            events_before=now - hours * HOUR if hours else None,
            links_before=now - days * DAY if days else None,
        )
        if pruned != Pruned():
            log.info(
                "pruned %d threads, %d event claims, %d reply links",
                pruned.conversations,
                pruned.events,
                pruned.links,
            )
        return pruned

    async def _run(self) -> None:
        while True:
            try:
                await self.prune()
            except Exception:
                # A busy or failing database must not stop later prunes; the next one catches up.
                log.exception("prune failed; trying again in %.0fs", self._settings.prune_interval)
            await asyncio.sleep(self._settings.prune_interval)
