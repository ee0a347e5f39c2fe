"""The one module that owns SQL: conversations, messages, keys, settings, processed events.

SQLite through aiosqlite in WAL mode at `DATA_DIR/bot.db`. Numbered `.sql` files in `migrations/`
are applied in order on open and recorded by full file name. Every write is one transaction taken
with BEGIN IMMEDIATE (so concurrent writers queue on the busy timeout instead of failing with
"database is locked" on upgrade), and writes from tasks of one process are serialised by a lock
because they share one connection.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiosqlite

from bot.citations import Source, dump
from bot.resources import bundled
from bot.vault import API_KEY, SLACK_INSTALLATION, Vault

BUSY_TIMEOUT_MS = 30_000  # how long a writer waits for another process's transaction
EVENT_LEASE_SECONDS = 120.0  # a claim older than this, never finished, belongs to a dead worker

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


def migration_files(directory: Path | None = None) -> list[Path]:
    """The numbered migrations in the order they apply."""
    folder = directory or bundled("migrations")
    return sorted(folder.glob("[0-9][0-9][0-9][0-9]_*.sql"))


class Store:
    """Async access to the bot's database; open with `await Store.open(path, vault)`."""

    def __init__(self, db: aiosqlite.Connection, vault: Vault) -> None:
        self._db = db
        self._vault = vault
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, vault: Vault, *, migrations_dir: Path | None = None) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN ourselves, so transactions are explicit.
        db = await aiosqlite.connect(path, isolation_level=None)
        db.row_factory = aiosqlite.Row
        await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA foreign_keys = ON")
        await db.execute("PRAGMA synchronous = NORMAL")
        store = cls(db, vault)
        try:
            await store.migrate(migrations_dir)
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        await self._db.close()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    # -- migrations ---------------------------------------------------------------------------

    async def migrate(self, migrations_dir: Path | None = None) -> list[str]:
        """Apply the migrations not yet recorded; returns the names applied now."""
        applied_now: list[str] = []
        async with self._transaction() as db:
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "name TEXT PRIMARY KEY, applied_at TEXT NOT NULL "
                "DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
            )
            async with db.execute("SELECT name FROM schema_migrations") as cursor:
                done = {row[0] for row in await cursor.fetchall()}
            for file in migration_files(migrations_dir):
                if file.name in done:
                    continue
                # executescript would COMMIT our transaction; run statement by statement.
                for statement in _statements(file.read_text()):
                    await db.execute(statement)
                await db.execute("INSERT INTO schema_migrations (name) VALUES (?)", (file.name,))
                applied_now.append(file.name)
        return applied_now

    async def applied_migrations(self) -> list[str]:
        async with self._db.execute("SELECT name FROM schema_migrations ORDER BY name") as cur:
            return [row[0] for row in await cur.fetchall()]

    # -- processed events ---------------------------------------------------------------------

    async def claim_event(self, event_id: str, *, lease: float = EVENT_LEASE_SECONDS) -> bool:
        """True for exactly one caller per event id, across tasks, processes and restarts.

        A claim never finished (its process died mid-answer) can be taken over after `lease`
        seconds, so a redelivery then still gets its answer instead of being lost.
        """
        now = time.time()
        async with self._transaction() as db:
            cursor = await db.execute(
                "INSERT INTO processed_events (event_id, claimed_at) VALUES (?, ?) "
                "ON CONFLICT (event_id) DO UPDATE SET claimed_at = excluded.claimed_at "
                "WHERE processed_events.done = 0 AND processed_events.claimed_at < ?",
                (event_id, now, now - lease),
            )
            return cursor.rowcount == 1

    async def finish_event(self, event_id: str) -> None:
        async with self._transaction() as db:
            await db.execute("UPDATE processed_events SET done = 1 WHERE event_id = ?", (event_id,))

    async def release_event(self, event_id: str) -> None:
        """Give up a claim so a redelivery may try again (the answer was not started)."""
        async with self._transaction() as db:
            await db.execute(
                "DELETE FROM processed_events WHERE event_id = ? AND done = 0", (event_id,)
            )

    # -- conversations ------------------------------------------------------------------------

    async def has_conversation(self, thread_key: str) -> bool:
        async with self._db.execute(
            "SELECT 1 FROM conversations WHERE thread_key = ?", (thread_key,)
        ) as cursor:
            return await cursor.fetchone() is not None

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
        async with self._db.execute(query, params) as cursor:
            rows = await cursor.fetchall()
        return [_message(row) for row in reversed(list(rows))]

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
    ) -> int:
        """Store a question and its answer in one transaction; returns the answer's id."""
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
        assert answer_id is not None
        return answer_id

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
        async with self._db.execute("SELECT * FROM messages WHERE id = ?", (message_id,)) as cur:
            row = await cur.fetchone()
        return _message(row) if row else None

    # -- API keys -----------------------------------------------------------------------------

    async def set_api_key(self, workspace: str, key: str, *, set_by: str | None = None) -> None:
        sealed = self._vault.encrypt(key, kind=API_KEY, workspace=workspace)
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO api_keys (workspace, ciphertext, set_by) VALUES (?, ?, ?) "
                "ON CONFLICT (workspace) DO UPDATE SET ciphertext = excluded.ciphertext, "
                "set_by = excluded.set_by, "
                "updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                (workspace, sealed, set_by),
            )

    async def get_api_key(self, workspace: str) -> str | None:
        async with self._db.execute(
            "SELECT ciphertext FROM api_keys WHERE workspace = ?", (workspace,)
        ) as cursor:
            row = await cursor.fetchone()
        return (
            self._vault.decrypt(bytes(row[0]), kind=API_KEY, workspace=workspace) if row else None
        )

    async def delete_api_key(self, workspace: str) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute("DELETE FROM api_keys WHERE workspace = ?", (workspace,))
            return cursor.rowcount == 1

    # -- per-workspace settings and the bot's own state ---------------------------------------

    async def get_setting(self, workspace: str, name: str) -> str | None:
        async with self._db.execute(
            "SELECT value FROM workspace_settings WHERE workspace = ? AND name = ?",
            (workspace, name),
        ) as cursor:
            row = await cursor.fetchone()
        return str(row[0]) if row else None

    async def set_setting(self, workspace: str, name: str, value: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO workspace_settings (workspace, name, value) VALUES (?, ?, ?) "
                "ON CONFLICT (workspace, name) DO UPDATE SET value = excluded.value",
                (workspace, name, value),
            )

    async def get_state(self, name: str) -> str | None:
        async with self._db.execute("SELECT value FROM bot_state WHERE name = ?", (name,)) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def set_state(self, name: str, value: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO bot_state (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    # -- Slack OAuth installations and OAuth state --------------------------------------------

    async def save_slack_installation(self, installation: str, data: str) -> None:
        """Store a Slack installation's JSON (it holds tokens) sealed and bound to its id."""
        sealed = self._vault.encrypt(data, kind=SLACK_INSTALLATION, workspace=installation)
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO slack_installations (installation, ciphertext) VALUES (?, ?) "
                "ON CONFLICT (installation) DO UPDATE SET ciphertext = excluded.ciphertext, "
                "installed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                (installation, sealed),
            )

    async def get_slack_installation(self, installation: str) -> str | None:
        async with self._db.execute(
            "SELECT ciphertext FROM slack_installations WHERE installation = ?", (installation,)
        ) as cursor:
            row = await cursor.fetchone()
        return (
            self._vault.decrypt(bytes(row[0]), kind=SLACK_INSTALLATION, workspace=installation)
            if row
            else None
        )

    async def delete_slack_installation(self, installation: str) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute(
                "DELETE FROM slack_installations WHERE installation = ?", (installation,)
            )
            return cursor.rowcount == 1

    async def issue_oauth_state(self, state: str, expires_at: float) -> None:
        """Remember an OAuth state value until `expires_at` (unix time); drops expired ones."""
        async with self._transaction() as db:
            await db.execute("DELETE FROM oauth_states WHERE expires_at < ?", (time.time(),))
            await db.execute(
                "INSERT INTO oauth_states (state, expires_at) VALUES (?, ?)", (state, expires_at)
            )

    async def consume_oauth_state(self, state: str) -> bool:
        """True once for a state issued and not yet expired; it is gone afterwards."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "DELETE FROM oauth_states WHERE state = ? AND expires_at >= ?",
                (state, time.time()),
            )
            return cursor.rowcount == 1

    # -- key rotation (`bot rotate-key`) ------------------------------------------------------

    async def reseal(self, target: Vault) -> int:
        """Re-seal every sealed value under `target` in one transaction; returns how many.

        All or nothing: a value this store's vault can't open rolls the whole rotation back, so
        the database never holds values sealed under two different secrets because of it.
        """
        sealed_columns = (
            (
                "SELECT workspace, ciphertext FROM api_keys",
                "UPDATE api_keys SET ciphertext = ? WHERE workspace = ?",
                API_KEY,
            ),
            (
                "SELECT installation, ciphertext FROM slack_installations",
                "UPDATE slack_installations SET ciphertext = ? WHERE installation = ?",
                SLACK_INSTALLATION,
            ),
        )
        resealed = 0
        async with self._transaction() as db:
            for select, update, kind in sealed_columns:
                async with db.execute(select) as cursor:
                    rows = await cursor.fetchall()
                for owner, sealed in rows:
                    plaintext = self._vault.decrypt(bytes(sealed), kind=kind, workspace=owner)
                    again = target.encrypt(plaintext, kind=kind, workspace=owner)
                    await db.execute(update, (again, owner))
                    resealed += 1
        self._vault = target
        return resealed


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


def _statements(script: str) -> list[str]:
    """Split a migration into statements (our migrations hold no triggers or literal ';')."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]
