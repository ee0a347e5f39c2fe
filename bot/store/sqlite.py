"""The embedded database: SQLite through aiosqlite in WAL mode, a file in DATA_DIR.

Every write is one transaction taken with BEGIN IMMEDIATE (so concurrent writers queue on the
busy timeout instead of failing with "database is locked" on upgrade), and writes from tasks of
one process are serialised by a lock because they share one connection. Reads go through a
second connection: WAL lets them run while a writer waits on another process's lock, so a read
(Slack OAuth's bot lookup, due within the 3-second ack) never queues behind a write.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

import aiosqlite

from bot.store.driver import Driver, Params, Row, Transaction

BUSY_TIMEOUT_MS = 30_000  # how long a writer waits for another process's transaction

_SCHEMA_MIGRATIONS = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT "
    "NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
)


class SqliteTransaction(Transaction):
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def execute(self, sql: str, params: Params = ()) -> int:
        async with self._db.execute(sql, tuple(params)) as cursor:
            return cursor.rowcount

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        async with self._db.execute(sql, tuple(params)) as cursor:
            return cast(list[Row], list(await cursor.fetchall()))

    async def script(self, sql: str) -> None:
        # executescript would COMMIT our transaction; run statement by statement.
        for statement in _statements(sql):
            await self._db.execute(statement)


class SqliteDriver(Driver):
    """A writer connection and a reader connection to one database file."""

    dialect = "sqlite"
    for_update = ""  # BEGIN IMMEDIATE: no other writer runs until the transaction ends

    def __init__(self, db: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._db = db
        self._reader = reader
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> SqliteDriver:
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
        return cls(db, reader)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._write_lock:
            try:
                # Inside the try: a cancel while BEGIN waits on another process's lock still
                # lets BEGIN run on the connection's thread, so it must be rolled back too.
                await self._db.execute("BEGIN IMMEDIATE")
                yield SqliteTransaction(self._db)
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

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        async with self._reader.execute(sql, tuple(params)) as cursor:
            return cast(list[Row], list(await cursor.fetchall()))

    async def prepare_migrations(self, tx: Transaction) -> None:
        # BEGIN IMMEDIATE already keeps every other process out until we commit.
        await tx.execute(_SCHEMA_MIGRATIONS)

    async def close(self) -> None:
        await self._reader.close()
        await self._db.close()


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
