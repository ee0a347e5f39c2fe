"""The shared database: PostgreSQL through an asyncpg pool, at DATABASE_URL, for several replicas.

Each write transaction runs on a connection of the pool (READ COMMITTED: the store's writes that
race across replicas say how they stay correct where they are written: conditional upserts and
updates, row locks taken with `for_update`). Reads take any free connection, so they never queue
behind a write. The store's `?` placeholders become `$1, $2, ...` here.

Migrations run in one transaction holding a transaction-level advisory lock, so replicas starting
together apply each file once: the others wait, then find it recorded.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import asyncpg

from bot.errors import ConfigError
from bot.store.driver import Driver, Params, Row, Transaction

POOL_SIZE = 10  # connections per process: answers in flight write while web reads run
CONNECT_TIMEOUT = 10.0  # seconds; a wrong host fails start-up in this time, not the OS's
# Any constant every replica shares: pg_advisory_xact_lock takes one bigint ("answerbot").
MIGRATION_LOCK = 0x616E73776572626F74 & 0x7FFF_FFFF_FFFF_FFFF
SCHEMES = ("postgresql", "postgres")

_SCHEMA_MIGRATIONS = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT "
    """NOT NULL DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))"""
)
_QUESTION_MARKS = re.compile(r"'[^']*'|\?")  # a quoted literal (kept whole) or a placeholder


@functools.lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1, $2, ...` (a `?` inside a quoted literal stays)."""
    count = 0

    def number(match: re.Match[str]) -> str:
        nonlocal count
        if match.group() != "?":
            return match.group()
        count += 1
        return f"${count}"

    return _QUESTION_MARKS.sub(number, sql)


def rowcount(status: str) -> int:
    """Rows changed, from a command status like 'INSERT 0 1', 'UPDATE 3' or 'DELETE 0'."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


def address(url: str) -> str:
    """Where a URL points, safe to log and show: host, port and database, never the user or
    password ('db.internal:5432/bot', '/run/postgresql/bot' for a socket directory)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "localhost"])[0]
    port = query.get("port", [str(parts.port) if parts.port else ""])[0]
    database = query.get("dbname", [parts.path.lstrip("/")])[0] or "(default database)"
    where = f"{host}:{port}" if port and not host.startswith("/") else host
    return f"{where}/{database}" if not where.endswith("/") else f"{where}{database}"


class PostgresTransaction(Transaction):
    def __init__(self, connection: Any) -> None:
        self._connection = connection

    async def execute(self, sql: str, params: Params = ()) -> int:
        return rowcount(await self._connection.execute(numbered(sql), *params))

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        return cast(list[Row], await self._connection.fetch(numbered(sql), *params))

    async def script(self, sql: str) -> None:
        # Without arguments asyncpg sends the whole text at once (the simple query protocol), so
        # a migration may hold any statement PostgreSQL takes, DO blocks and functions included.
        await self._connection.execute(sql)


class PostgresDriver(Driver):
    """A pool of connections to one PostgreSQL database."""

    dialect = "postgres"
    for_update = " FOR UPDATE"

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str) -> PostgresDriver:
        """Connect, or a ConfigError naming the host and database (never the password)."""
        try:
            pool = await asyncpg.create_pool(
                url, min_size=1, max_size=POOL_SIZE, timeout=CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            reason = _reason(error)
            raise ConfigError(
                f"cannot connect to the database at {address(url)}: {reason}"
            ) from None
        except ValueError:
            # A malformed URL: asyncpg's message may quote it, password and all.
            raise ConfigError(
                f"DATABASE_URL for {address(url)} is not a valid PostgreSQL URL"
            ) from None
        return cls(pool)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._pool.acquire() as connection, connection.transaction():
            yield PostgresTransaction(connection)

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        return cast(list[Row], await self._pool.fetch(numbered(sql), *params))

    async def prepare_migrations(self, tx: Transaction) -> None:
        # Held until this transaction ends: another replica's migrate() waits here, then sees
        # every file this one applied as recorded.
        await tx.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
        await tx.execute(_SCHEMA_MIGRATIONS)

    async def close(self) -> None:
        await self._pool.close()


def _reason(error: BaseException) -> str:
    # asyncpg's messages name the user and database at most; an OSError names the address.
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
