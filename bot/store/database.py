"""What every part of the store shares: its driver (SQLite or PostgreSQL), the vault, cancel-safe
writes and the migrations.

Numbered `.sql` files are applied in order on open and recorded by full file name: SQLite's in
`migrations/`, PostgreSQL's in `migrations/postgres/` (the SQL differs; the schema is the same).
A later feature that needs its own PostgreSQL tables (the knowledge index's pgvector tables, with
`CREATE EXTENSION IF NOT EXISTS vector`) adds the next numbered file there.

A write, once started, runs to its end even if its caller is cancelled (`@atomic`): a cancel in
the middle would otherwise leave a transaction open on a shared connection (SQLite: every later
write would fail with "cannot start a transaction within a transaction" while the database's
write lock stayed held against other processes).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

from bot.resources import bundled
from bot.store.driver import Dialect, Driver, Transaction
from bot.store.postgres import PostgresDriver
from bot.store.sqlite import SqliteDriver
from bot.vault import Vault

P = ParamSpec("P")
T = TypeVar("T")
D = TypeVar("D", bound="Database")

POSTGRES_MIGRATIONS = "postgres"  # the folder inside migrations/ with PostgreSQL's files


def migration_files(directory: Path | None = None, dialect: Dialect = "sqlite") -> list[Path]:
    """The numbered migrations in the order they apply (`directory`: instead of the bundled)."""
    folder = directory or bundled("migrations")
    if directory is None and dialect == "postgres":
        folder = folder / POSTGRES_MIGRATIONS
    return sorted(folder.glob("[0-9][0-9][0-9][0-9]_*.sql"))


async def apply_migrations(driver: Driver, migrations_dir: Path | None = None) -> list[str]:
    """`Database.migrate` on a bare driver: for `bot ingest` with DATABASE_URL, which needs the
    knowledge index's tables but no store (bot/knowledge/postgres.py)."""
    applied_now: list[str] = []
    async with driver.transaction() as tx:
        await driver.prepare_migrations(tx)
        done = {row[0] for row in await tx.fetch("SELECT name FROM schema_migrations")}
        for file in migration_files(migrations_dir, driver.dialect):
            if file.name in done:
                continue
            await tx.script(file.read_text())
            await tx.execute("INSERT INTO schema_migrations (name) VALUES (?)", (file.name,))
            applied_now.append(file.name)
    return applied_now


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
    """A database driver and the vault that seals secrets at rest."""

    def __init__(self, driver: Driver, vault: Vault) -> None:
        self._driver = driver
        self._read = driver  # reads: never behind a writer (SQLite: the second connection)
        self._vault = vault
        self._writes: set[asyncio.Future[Any]] = set()  # started writes, finished at close

    @classmethod
    async def open(cls, path: Path, vault: Vault, *, migrations_dir: Path | None = None) -> Self:
        """The SQLite database at `path`, migrated."""
        return await cls._migrated(await SqliteDriver.open(path), vault, migrations_dir)

    @classmethod
    async def open_postgres(
        cls, url: str, vault: Vault, *, migrations_dir: Path | None = None
    ) -> Self:
        """The PostgreSQL database at `url` (libpq form), migrated; ConfigError if unreachable."""
        return await cls._migrated(await PostgresDriver.open(url), vault, migrations_dir)

    @classmethod
    async def _migrated(cls, driver: Driver, vault: Vault, migrations_dir: Path | None) -> Self:
        store = cls(driver, vault)
        try:
            await store.migrate(migrations_dir)
        except BaseException:
            await store.close()
            raise
        return store

    @property
    def dialect(self) -> Dialect:
        return self._driver.dialect

    async def close(self) -> None:
        # Writes whose callers were cancelled still run; they land before the connection goes.
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self._driver.close()

    def _transaction(self) -> AbstractAsyncContextManager[Transaction]:
        return self._driver.transaction()

    async def migrate(self, migrations_dir: Path | None = None) -> list[str]:
        """Apply the migrations not yet recorded, all in one transaction; returns the names
        applied now. Processes migrating at once apply each file once."""
        return await apply_migrations(self._driver, migrations_dir)

    async def ping(self) -> None:
        """One round trip to the database (on the read path); raises if it can't be made."""
        await self._read.fetch("SELECT 1")

    async def applied_migrations(self) -> list[str]:
        rows = await self._read.fetch("SELECT name FROM schema_migrations ORDER BY name")
        return [str(row[0]) for row in rows]
