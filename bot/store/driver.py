"""The contract between the store's SQL and a database: the few operations the parts need.

The parts of the store (threads, events, journal, ...) write one SQL text for both databases, in
the subset SQLite and PostgreSQL both speak (`?` placeholders, `ON CONFLICT`, `RETURNING`,
`substr`, timestamps passed in from Python), and run it through a `Driver`:

- `transaction()`: one write transaction; inside it `execute` (returns the rows changed),
  `fetch`, `fetchone` and `script` (a whole migration file). Committed at the end of the block,
  rolled back on any exception, cancellation included.
- `fetch` / `fetchone` on the driver itself: a read outside any write transaction, never queued
  behind a writer.
- `for_update`: what a SELECT appends to lock the rows it returns until the transaction ends
  (PostgreSQL's row locks; empty for SQLite, whose one writer at a time already excludes others).

Rows answer both `row["name"]` and `row[0]`. The two drivers are `bot.store.sqlite` (the embedded
default, a file in DATA_DIR) and `bot.store.postgres` (DATABASE_URL, shared by replicas).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

Dialect = Literal["sqlite", "postgres"]
Params = Sequence[object]


class Row(Protocol):
    def __getitem__(self, key: int | str, /) -> Any: ...
    def __iter__(self) -> Iterator[Any]: ...


class Transaction(abc.ABC):
    """Statements inside one write transaction."""

    @abc.abstractmethod
    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; returns how many rows it inserted, updated or deleted."""

    @abc.abstractmethod
    async def fetch(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    @abc.abstractmethod
    async def script(self, sql: str) -> None:
        """Run a migration file's statements, inside this transaction."""


class Driver(abc.ABC):
    """One database: its write transactions, its read path, and its migrations' bookkeeping."""

    dialect: Dialect
    for_update: str

    @abc.abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...

    @abc.abstractmethod
    async def fetch(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    @abc.abstractmethod
    async def prepare_migrations(self, tx: Transaction) -> None:
        """Inside the migrations' transaction: hold off other processes migrating the same
        database until it ends, and make sure `schema_migrations` exists."""

    @abc.abstractmethod
    async def close(self) -> None: ...


def timestamp(unix: float) -> str:
    """A unix time as the schema's TEXT timestamps ('2024-05-01T12:00:00.123Z', UTC, what
    SQLite's strftime('%Y-%m-%dT%H:%M:%fZ') makes), which compare in time order as strings."""
    moment = datetime.fromtimestamp(unix, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def placeholders(count: int) -> str:
    """`?, ?, ?` for an IN list of `count` values."""
    return ", ".join("?" * count)
