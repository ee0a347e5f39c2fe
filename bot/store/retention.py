"""Pruning what has outlived its use: conversations idle past the retention (their messages and
feedback go with them, ON DELETE CASCADE), old event claims and old reply links.

Each kind is deleted in batches of at most `batch` rows, one transaction each, so a prune of a
large backlog never holds the database's write lock for long: answers being stored queue for
one batch at most, and other processes see the lock free between batches. On PostgreSQL, where
replicas write at the same time, the threads chosen are locked and checked again before they go
(see `_prune_conversations`).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.store.database import Database, atomic
from bot.store.driver import placeholders, timestamp

PRUNE_BATCH = 500  # rows (conversations: threads, with their messages) per transaction

# The conversations whose last activity (their newest message, or their creation when they have
# none) is before a time, in id order from a cursor. Ids grow with time, so the newest message
# is the one with the highest id: one step down the (conversation_id, id) index per candidate.
_IDLE = (
    "c.created_at < ? AND COALESCE((SELECT m.created_at FROM messages m WHERE "
    "m.conversation_id = c.id ORDER BY m.id DESC LIMIT 1), c.created_at) < ?"
)
# (The f-strings in this module only join constant SQL and `?` placeholders.)
_OLD_CONVERSATIONS = (
    f"SELECT c.id FROM conversations c WHERE c.id > ? AND {_IDLE} ORDER BY c.id LIMIT ?"  # noqa: S608
)

# Claims (finished or not: a lease long run out) and links made before a time, `LIMIT` at a time.
_OLD_EVENTS = (
    "DELETE FROM processed_events WHERE event_id IN "
    "(SELECT event_id FROM processed_events WHERE claimed_at < ? LIMIT ?)"
)
_OLD_LINKS = (
    "DELETE FROM reply_links WHERE (workspace, message) IN "
    "(SELECT workspace, message FROM reply_links WHERE created_at < ? LIMIT ?)"
)


@dataclass(frozen=True)
class Pruned:
    """How many rows a prune deleted, by kind (messages went with their conversations)."""

    conversations: int = 0
    events: int = 0
    links: int = 0


class Retention(Database):
    async def prune(
        self,
        *,
        threads_before: float | None,
        events_before: float | None,
        links_before: float | None,
        batch: int = PRUNE_BATCH,
    ) -> Pruned:
        """Delete conversations last active, event claims made and reply links made before
        the given unix times (None: keep that kind)."""
        conversations = events = links = 0
        if threads_before is not None:
            cutoff, cursor = timestamp(threads_before), 0
            while True:
                deleted, last = await self._prune_conversations(cutoff, cursor, batch)
                if last is None:
                    break
                conversations, cursor = conversations + deleted, last
        if events_before is not None:
            while deleted := await self._prune_rows(_OLD_EVENTS, events_before, batch):
                events += deleted
        if links_before is not None:
            while deleted := await self._prune_rows(_OLD_LINKS, links_before, batch):
                links += deleted
        return Pruned(conversations, events, links)

    @atomic
    async def _prune_conversations(
        self, before: str, after_id: int, batch: int
    ) -> tuple[int, int | None]:
        """Delete one batch; returns how many, and the last id looked at (None: no more)."""
        # Chosen and deleted in one transaction: a follow-up stored meanwhile either lands
        # first (its thread is then active and kept) or after (and starts the thread afresh).
        # SQLite: no other writer runs meanwhile. PostgreSQL: the chosen threads are locked (a
        # follow-up locks its thread's row too, see threads._ensure_conversation), then chosen
        # again, which sees every follow-up committed before the lock was had.
        async with self._transaction() as db:
            rows = await db.fetch(_OLD_CONVERSATIONS, (after_id, before, before, batch))
            ids = [int(row[0]) for row in rows]
            if not ids:
                return 0, None
            last = ids[-1]  # the next batch starts after it, whether it went or was kept
            if self._driver.for_update:
                chosen = (
                    f"SELECT c.id FROM conversations c WHERE c.id IN ({placeholders(len(ids))})"  # noqa: S608
                )
                await db.execute(chosen + self._driver.for_update, ids)
                still = await db.fetch(f"{chosen} AND {_IDLE}", (*ids, before, before))
                ids = [int(row[0]) for row in still]
            if ids:
                gone = f"DELETE FROM conversations WHERE id IN ({placeholders(len(ids))})"  # noqa: S608
                await db.execute(gone, ids)
        return len(ids), last

    @atomic
    async def _prune_rows(self, delete: str, before: float, batch: int) -> int:
        async with self._transaction() as db:
            return await db.execute(delete, (before, batch))
