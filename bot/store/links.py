"""Reply links: which thread a platform message belongs to (so a reply to one of the bot's
answers continues that thread), with when the link was made, so old ones can be pruned."""

from __future__ import annotations

import time

from bot.store.database import Database, atomic


class Links(Database):
    @atomic
    async def link_message(
        self, workspace: str, message: str, thread_key: str, *, at: float | None = None
    ) -> None:
        """Remember that `message` (platform-qualified) belongs to `thread_key`, as of `at`."""
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO reply_links (workspace, message, thread_key, created_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (workspace, message) DO UPDATE SET "
                "thread_key = excluded.thread_key, created_at = excluded.created_at",
                (workspace, message, thread_key, time.time() if at is None else at),
            )

    async def linked_thread(self, workspace: str, message: str) -> str | None:
        row = await self._read.fetchone(
            "SELECT thread_key FROM reply_links WHERE workspace = ? AND message = ?",
            (workspace, message),
        )
        return str(row[0]) if row else None
