"""Per-workspace settings and the bot's own small pieces of state (name → value)."""

from __future__ import annotations

from bot.store.database import Database, atomic


class Settings(Database):
    async def get_setting(self, workspace: str, name: str) -> str | None:
        row = await self._read.fetchone(
            "SELECT value FROM workspace_settings WHERE workspace = ? AND name = ?",
            (workspace, name),
        )
        return str(row[0]) if row else None

    @atomic
    async def set_setting(self, workspace: str, name: str, value: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO workspace_settings (workspace, name, value) VALUES (?, ?, ?) "
                "ON CONFLICT (workspace, name) DO UPDATE SET value = excluded.value",
                (workspace, name, value),
            )

    async def get_state(self, name: str) -> str | None:
        row = await self._read.fetchone("SELECT value FROM bot_state WHERE name = ?", (name,))
        return str(row[0]) if row else None

    @atomic
    async def set_state(self, name: str, value: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO bot_state (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )
