"""The database connection pair, transactions and migrations that every part of the store shares.

SQLite through aiosqlite in WAL mode at `DATA_DIR/bot.db`. Numbered `.sql` files in `migrations/`
are applied in order on open and recorded by full file name. Every write is one transaction taken
with BEGIN IMMEDIATE (so concurrent writers queue on the busy timeout instead of failing with
"database is locked" on upgrade), and writes from tasks of one process are serialised by a lock
because they share one connection. Reads go through a second connection: WAL lets them run while
a writer waits on another process's lock, so a read (Slack OAuth's bot lookup, due within the
3-second ack) never queues behind a write.

A write, once started, runs to its end even if its caller is cancelled (`@atomic`): a cancel in
the middle would otherwise leave a transaction open on the shared connection, and every later
write would fail with "cannot start a transaction within a transaction" while the database's
write lock stayed held against other processes.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

import aiosqlite

from bot.resources import bundled
from bot.vault import Vault

BUSY_TIMEOUT_MS = 30_000  # how long a writer waits for another process's transaction

P = ParamSpec("P")
T = TypeVar("T")
D = TypeVar("D", bound="Database")


def migration_files(directory: Path | None = None) -> list[Path]:
    """The numbered migrations in the order they apply."""
    folder = directory or bundled("migrations")
    return sorted(folder.glob("[0-9][0-9][0-9][0-9]_*.sql"))


def atomic(
    method: Callable[Concatenate[D, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[D, P], Coroutine[Any, Any, T]]:
    """Run a write method as a task of its own that a cancelled caller does not interrupt."""

    @functools.wraps(method)
    async def run(store: D, /, *args: P.args, **kwargs: P.kwargs) -> T:
        async def write() -> T:
            return await method(store, *args, **kwargs)

        task = asyncio.ensure_future(write())
        store._writes.add(task)
        task.add_done_callback(store._writes.discard)
        return await asyncio.shield(task)

    return run


class Database:
    """A writer connection, a reader connection and the vault that seals secrets at rest."""

    def __init__(
        self, db: aiosqlite.Connection, reader: aiosqlite.Connection, vault: Vault
    ) -> None:
        self._db = db
        self._reader = reader
        self._vault = vault
        self._write_lock = asyncio.Lock()
        self._writes: set[asyncio.Future[Any]] = set()  # started writes, finished at close

    @classmethod
    async def open(cls, path: Path, vault: Vault, *, migrations_dir: Path | None = None) -> Self:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await _connect(path)
        try:
            # Read to the end: an unfinished PRAGMA statement keeps a lock the reader then waits on.
            async with db.execute("PRAGMA journal_mode = WAL") as cursor:
                await cursor.fetchall()
            reader = await _connect(path)
        except BaseException:
            await db.close()
            raise
        store = cls(db, reader, vault)
        try:
            await store.migrate(migrations_dir)
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        # Writes whose callers were cancelled still run; they land before the connection goes.
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self._reader.close()
        await self._db.close()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            try:
                # Inside the try: a cancel while BEGIN waits on another process's lock still
                # lets BEGIN run on the connection's thread, so it must be rolled back too.
                await self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                await self._db.execute("COMMIT")
            except BaseException:
                await asyncio.shield(self._rollback())
                raise

    async def _rollback(self) -> None:
        # Queued behind whatever this connection is still running, so it sees the BEGIN; "no
        # transaction is active" just means there was nothing to undo.
        try:
            await self._db.execute("ROLLBACK")
        except sqlite3.OperationalError as error:
            if "no transaction is active" not in str(error):
                raise

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
        async with self._reader.execute("SELECT name FROM schema_migrations ORDER BY name") as cur:
            return [row[0] for row in await cur.fetchall()]


async def _connect(path: Path) -> aiosqlite.Connection:
    # isolation_level=None: we issue BEGIN ourselves, so transactions are explicit.
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        db.row_factory = aiosqlite.Row
        await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await db.execute("PRAGMA foreign_keys = ON")
        await db.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        await db.close()
        raise
    return db


def _statements(script: str) -> list[str]:
    """Split a migration into statements (our migrations hold no triggers or literal ';')."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]
