"""Conversations (one per platform thread), their messages, and feedback on answers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import aiosqlite

from bot.citations import Source, dump
from bot.store.database import Database, atomic

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
        async with self._reader.execute(
            "SELECT 1 FROM conversations WHERE thread_key = ?", (thread_key,)
        ) as cursor:
            return await cursor.fetchone() is not None

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
        async with self._reader.execute(query, params) as cursor:
            rows = await cursor.fetchall()
        return [_message(row) for row in reversed(list(rows))]

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
            cursor = await db.execute(
                "INSERT INTO messages (conversation_id, role, text, sources, status) "
                "VALUES (?, 'assistant', ?, ?, ?)",
                (conversation_id, answer, json.dumps(dump(sources)), status),
            )
            answer_id = cursor.lastrowid
            if journal is not None:
                await db.execute(
                    "UPDATE answers_in_flight SET answer_id = ? WHERE id = ?", (answer_id, journal)
                )
        assert answer_id is not None
        return answer_id

    @atomic
    async def set_feedback(self, message_id: int, value: int, *, user: str, workspace: str) -> bool:
        """Record 👍 (1) or 👎 (-1) on an answer of `workspace`; False if there is none."""
        if value not in (-1, 1):
            raise ValueError("feedback is -1 or 1")
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE messages SET feedback = ?, feedback_by = ? WHERE id = ? AND role = "
                "'assistant' AND conversation_id IN "
                "(SELECT id FROM conversations WHERE workspace = ?)",
                (value, user, message_id, workspace),
            )
            return cursor.rowcount == 1

    async def get_message(self, message_id: int) -> StoredMessage | None:
        async with self._reader.execute(
            "SELECT * FROM messages WHERE id = ?", (message_id,)
        ) as cur:
            row = await cur.fetchone()
        return _message(row) if row else None


async def _ensure_conversation(db: aiosqlite.Connection, thread_key: str, workspace: str) -> int:
    await db.execute(
        "INSERT INTO conversations (thread_key, workspace) VALUES (?, ?) "
        "ON CONFLICT (thread_key) DO NOTHING",
        (thread_key, workspace),
    )
    async with db.execute(
        "SELECT id FROM conversations WHERE thread_key = ?", (thread_key,)
    ) as cursor:
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


def _message(row: aiosqlite.Row) -> StoredMessage:
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
