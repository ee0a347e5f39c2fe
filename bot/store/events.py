"""Claims on platform events, so each delivery (and each redelivery of it) is answered once."""

from __future__ import annotations

import time

from bot.store.database import Database, atomic

EVENT_LEASE_SECONDS = 120.0  # a claim older than this, never finished, belongs to a dead worker


class Events(Database):
    @atomic
    async def claim_event(self, event_id: str, *, lease: float = EVENT_LEASE_SECONDS) -> bool:
        """True for exactly one caller per event id, across tasks, processes and restarts.

        A claim never finished (its process died mid-answer) can be taken over after `lease`
        seconds, so a redelivery then still gets its answer instead of being lost.
        """
        now = time.time()
        async with self._transaction() as db:
            # One statement: on PostgreSQL a second claimer waits on the first one's row and
            # then tests the WHERE against the row as committed, so a fresh claim is never
            # taken over, whichever replica asks.
            changed = await db.execute(
                "INSERT INTO processed_events (event_id, claimed_at) VALUES (?, ?) "
                "ON CONFLICT (event_id) DO UPDATE SET claimed_at = excluded.claimed_at "
                "WHERE processed_events.done = 0 AND processed_events.claimed_at < ?",
                (event_id, now, now - lease),
            )
            return changed == 1

    @atomic
    async def finish_event(self, event_id: str) -> None:
        async with self._transaction() as db:
            await db.execute("UPDATE processed_events SET done = 1 WHERE event_id = ?", (event_id,))

    @atomic
    async def release_event(self, event_id: str) -> None:
        """Give up a claim so a redelivery may try again (the answer was not started)."""
        async with self._transaction() as db:
            await db.execute(
                "DELETE FROM processed_events WHERE event_id = ? AND done = 0", (event_id,)
            )
