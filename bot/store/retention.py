"""Pruning what has outlived its use: conversations idle past the retention (their messages and
feedback go with them, ON DELETE CASCADE), old event claims and old reply links.

Each kind is deleted in batches of at most `batch` rows, one transaction each, so a prune of a
large backlog never holds the database's write lock for long: answers being stored queue for
one batch at most, and other processes see the lock free between batches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.store.database import Database, atomic

PRUNE_BATCH = 500  # rows (conversations: threads, with their messages) per transaction

# The conversations whose last activity (their newest message, or their creation when they have
# none) is before a time, in id order from a cursor. Ids grow with time, so the newest message
# is the one with the highest id: one step down the (conversation_id, id) index per candidate.
_OLD_CONVERSATIONS = (
    "SELECT c.id FROM conversations c WHERE c.id > ? AND c.created_at < ? AND COALESCE("
    "(SELECT m.created_at FROM messages m WHERE m.conversation_id = c.id "
    "ORDER BY m.id DESC LIMIT 1), c.created_at) < ? ORDER BY c.id LIMIT ?"
)

# Claims (finished or not: a lease long run out) and links made before a time, `LIMIT` at a time.
_OLD_EVENTS = (
    "DELETE FROM processed_events WHERE rowid IN "
    "(SELECT rowid FROM processed_events WHERE claimed_at < ? LIMIT ?)"
)
_OLD_LINKS = (
    "DELETE FROM reply_links WHERE rowid IN "
    "(SELECT rowid FROM reply_links WHERE created_at < ? LIMIT ?)"
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
            cutoff, cursor = _timestamp(threads_before), 0
            while ids := await self._prune_conversations(cutoff, cursor, batch):
                conversations += len(ids)
                cursor = ids[-1]
        if events_before is not None:
            while deleted := await self._prune_rows(_OLD_EVENTS, events_before, batch):
                events += deleted
        if links_before is not None:
            while deleted := await self._prune_rows(_OLD_LINKS, links_before, batch):
                links += deleted
        return Pruned(conversations, events, links)

    @atomic
    async def _prune_conversations(self, before: str, after_id: int, batch: int) -> list[int]:
        # Chosen and deleted in one transaction: a follow-up stored meanwhile either lands
        # first (its thread is then active and kept) or after (and starts the thread afresh).
        async with self._transaction() as db:
            async with db.execute(_OLD_CONVERSATIONS, (after_id, before, before, batch)) as cur:
                ids = [int(row[0]) for row in await cur.fetchall()]
            if ids:
                await db.execute(
                    "DELETE FROM conversations WHERE id IN (SELECT value FROM json_each(?))",
                    (json.dumps(ids),),
                )
        return ids

    @atomic
    async def _prune_rows(self, delete: str, before: float, batch: int) -> int:
        async with self._transaction() as db:
            cursor = await db.execute(delete, (before, batch))
            return cursor.rowcount


def _timestamp(unix: float) -> str:
    """A unix time as the schema's TEXT timestamps (strftime('%Y-%m-%dT%H:%M:%fZ')), which
    compare in time order as strings."""
    moment = datetime.fromtimestamp(unix, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
