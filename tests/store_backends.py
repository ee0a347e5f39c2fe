"""The store's two databases for tests that run against each: the `backend` fixture (in
tests/conftest.py) gives a `Backend`, SQLite in the test's tmp_path or a fresh PostgreSQL database.

`open()` opens a `Store` on it (as often as a test likes: several are like several processes or
replicas); `execute` and `scalar` run SQL on a connection of their own, as another process would,
with `?` placeholders on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import asyncpg

from bot.settings import Settings
from bot.store import Store
from bot.store.postgres import numbered
from bot.vault import Vault

Kind = Literal["sqlite", "postgres"]
TEST_SECRET = "test-secret-shared-by-replicas"


@dataclass(frozen=True)
class Backend:
    kind: Kind
    data_dir: Path
    url: str | None  # the PostgreSQL database's URL

    @property
    def path(self) -> Path:
        return self.data_dir / "bot.db"

    async def open(
        self, vault: Vault | None = None, *, migrations_dir: Path | None = None
    ) -> Store:
        vault = vault or Vault(TEST_SECRET.encode())
        if self.url is not None:
            return await Store.open_postgres(self.url, vault, migrations_dir=migrations_dir)
        return await Store.open(self.path, vault, migrations_dir=migrations_dir)

    def settings(self, **values: Any) -> Settings:
        """Settings for this database (PostgreSQL: with the SECRET_KEY it requires)."""
        if self.url is not None:
            values = {"database_url": self.url, "secret_key": TEST_SECRET, **values}
        values.setdefault("data_dir", self.data_dir)
        return Settings(_env_file=None, openai_api_key=None, **values)

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        if self.url is None:
            await asyncio.to_thread(self._sqlite, sql, params)
            return
        connection = await asyncpg.connect(self.url)
        try:
            await connection.execute(numbered(sql), *params)
        finally:
            await connection.close()

    async def scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        if self.url is None:
            return await asyncio.to_thread(self._sqlite, sql, params)
        connection = await asyncpg.connect(self.url)
        try:
            return await connection.fetchval(numbered(sql), *params)
        finally:
            await connection.close()

    def _sqlite(self, sql: str, params: tuple[Any, ...]) -> Any:
        with contextlib.closing(sqlite3.connect(self.path, timeout=30)) as db, db:
            row = db.execute(sql, params).fetchone()
        return row[0] if row else None
