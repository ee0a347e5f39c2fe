"""Conversations (one per platform thread), their messages, and feedback on answers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from bot.citations import Source, dump
from bot.store.database import Database, atomic
from bot.store.driver import Row, Transaction

Role = Literal["user", "assistant"]
Status = Literal["done", "failed", "cancelled"]


@dataclass(frozen=True)
class StoredMessage:
    id: int
    role: Role
    text: str
    sources: list[Source]
    status: Status
    author: str | None
    feedback: int | None
    created_at: str


class Threads(Database):
    async def has_conversation(self, thread_key: str) -> bool:
        row = await self._read.fetchone(
            "SELECT 1 FROM conversations WHERE thread_key = ?", (thread_key,)
        )
        return row is not None

    @atomic
    async def ensure_conversation(self, thread_key: str, workspace: str) -> None:
        """Mark a thread as one the bot takes part in (so follow-ups need no mention)."""
        async with self._transaction() as db:
            await _ensure_conversation(db, thread_key, workspace)

    async def thread_messages(
        self, thread_key: str, limit: int | None = None
    ) -> list[StoredMessage]:
        """The thread's messages, oldest first; with `limit`, only the newest `limit`."""
        query = (
            "SELECT m.* FROM messages m JOIN conversations c ON c.id = m.conversation_id "
            "WHERE c.thread_key = ? ORDER BY m.id DESC"
        )
        params: tuple[object, ...] = (thread_key,)
        if limit is not None:
            query += " LIMIT ?"
            params = (thread_key, limit)
        rows = await self._read.fetch(query, params)
        return [_message(row) for row in reversed(rows)]

    @atomic
    async def record_exchange(
        self,
        *,
        thread_key: str,
        workspace: str,
        question: str,
        answer: str,
        sources: Sequence[Source],
        status: Status,
        author: str | None = None,
        journal: int | None = None,
    ) -> int:
        """Store a question and its answer in one transaction; returns the answer's id. With
        `journal`, that answer-in-flight row notes it, so mending it later stores nothing twice."""
        async with self._transaction() as db:
            conversation_id = await _ensure_conversation(db, thread_key, workspace)
            await db.execute(
                "INSERT INTO messages (conversation_id, role, text, author) "
                "VALUES (?, 'user', ?, ?)",
                (conversation_id, question, author),
            )
            row = await db.fetchone(
                "INSERT INTO messages (conversation_id, role, text, sources, status) "
                "VALUES (?, 'assistant', ?, ?, ?) RETURNING id",
                (conversation_id, answer, json.dumps(dump(sources)), status),
            )
            assert row is not None
            answer_id = int(row[0])
            if journal is not None:
                await db.execute(
                    "UPDATE answers_in_flight SET answer_id = ? WHERE id = ?", (answer_id, journal)
                )
        return answer_id

    @atomic
    async def set_feedback(self, message_id: int, value: int, *, user: str, workspace: str) -> bool:
        """Record 👍 (1) or 👎 (-1) on an answer of `workspace`; False if there is none."""
        if value not in (-1, 1):
            raise ValueError("feedback is -1 or 1")
        async with self._transaction() as db:
            changed = await db.execute(
                "UPDATE messages SET feedback = ?, feedback_by = ? WHERE id = ? AND role = "
                "'assistant' AND conversation_id IN "
                "(SELECT id FROM conversations WHERE workspace = ?)",
                (value, user, message_id, workspace),
            )
            return changed == 1

    @atomic
    async def set_answer_status(self, answer_id: int, status: Status) -> None:
        """Change a stored answer's status (its end state never reached the platform)."""
        async with self._transaction() as db:
            await db.execute(
                "UPDATE messages SET status = ? WHERE id = ? AND role = 'assistant'",
                (status, answer_id),
            )

    async def get_message(self, message_id: int) -> StoredMessage | None:
        row = await self._read.fetchone("SELECT * FROM messages WHERE id = ?", (message_id,))
        return _message(row) if row else None


async def _ensure_conversation(db: Transaction, thread_key: str, workspace: str) -> int:
    # DO UPDATE, not DO NOTHING: it returns the id either way, and on PostgreSQL it locks the
    # thread's row until this transaction ends, so a prune on another replica, which locks the
    # rows it deletes, either waits for this exchange (and then sees the thread active) or
    # finishes first (and this inserts the thread afresh); never deletes what this just stored.
    row = await db.fetchone(
        "INSERT INTO conversations (thread_key, workspace) VALUES (?, ?) "
        "ON CONFLICT (thread_key) DO UPDATE SET thread_key = excluded.thread_key RETURNING id",
        (thread_key, workspace),
    )
    assert row is not None
    return int(row[0])


def _message(row: Row) -> StoredMessage:
    return StoredMessage(
        id=row["id"],
        role=row["role"],
        text=row["text"],
        sources=[Source.from_json(item) for item in json.loads(row["sources"])],
        status=row["status"],
        author=row["author"],
        feedback=row["feedback"],
        created_at=row["created_at"],
    )
