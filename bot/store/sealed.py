"""Secrets at rest: API keys and Slack installations sealed by the vault, and OAuth states.

Each sealed value is bound to its kind and owner (the vault's associated data), so a row copied
to another workspace, or from one table to the other, does not open.
"""

from __future__ import annotations

import time

from bot.store.database import Database, atomic
from bot.store.driver import timestamp
from bot.vault import ANSWER_ADDRESS, API_KEY, SLACK_INSTALLATION, Vault


class Sealed(Database):
    @atomic
    async def set_api_key(self, workspace: str, key: str, *, set_by: str | None = None) -> None:
        sealed = self._vault.encrypt(key, kind=API_KEY, workspace=workspace)
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO api_keys (workspace, ciphertext, set_by, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (workspace) DO UPDATE SET "
                "ciphertext = excluded.ciphertext, set_by = excluded.set_by, "
                "updated_at = excluded.updated_at",
                (workspace, sealed, set_by, timestamp(time.time())),
            )

    async def get_api_key(self, workspace: str) -> str | None:
        row = await self._read.fetchone(
            "SELECT ciphertext FROM api_keys WHERE workspace = ?", (workspace,)
        )
        return (
            self._vault.decrypt(bytes(row[0]), kind=API_KEY, workspace=workspace) if row else None
        )

    @atomic
    async def delete_api_key(self, workspace: str) -> bool:
        async with self._transaction() as db:
            deleted = await db.execute("DELETE FROM api_keys WHERE workspace = ?", (workspace,))
            return deleted == 1

    @atomic
    async def delete_api_keys_within(self, workspace: str) -> int:
        """Delete the key of `workspace` and of every workspace inside it (ids `workspace:…`,
        as `slack:E1:T1` is inside the Enterprise Grid org `slack:E1`); returns how many."""
        async with self._transaction() as db:
            # substr, not LIKE: ids may hold "_", which LIKE reads as a wildcard.
            return await db.execute(
                "DELETE FROM api_keys WHERE workspace = ? OR substr(workspace, 1, ?) = ?",
                (workspace, len(workspace) + 1, f"{workspace}:"),
            )

    @atomic
    async def save_slack_installation(self, installation: str, data: str) -> None:
        """Store a Slack installation's JSON (it holds tokens) sealed and bound to its id."""
        sealed = self._vault.encrypt(data, kind=SLACK_INSTALLATION, workspace=installation)
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO slack_installations (installation, ciphertext, installed_at) "
                "VALUES (?, ?, ?) ON CONFLICT (installation) DO UPDATE SET "
                "ciphertext = excluded.ciphertext, installed_at = excluded.installed_at",
                (installation, sealed, timestamp(time.time())),
            )

    async def get_slack_installation(self, installation: str) -> str | None:
        row = await self._read.fetchone(
            "SELECT ciphertext FROM slack_installations WHERE installation = ?", (installation,)
        )
        return (
            self._vault.decrypt(bytes(row[0]), kind=SLACK_INSTALLATION, workspace=installation)
            if row
            else None
        )

    @atomic
    async def delete_slack_installation(self, installation: str) -> bool:
        async with self._transaction() as db:
            deleted = await db.execute(
                "DELETE FROM slack_installations WHERE installation = ?", (installation,)
            )
            return deleted == 1

    @atomic
    async def issue_oauth_state(self, state: str, expires_at: float) -> None:
        """Remember an OAuth state value until `expires_at` (unix time); drops expired ones."""
        async with self._transaction() as db:
            await db.execute("DELETE FROM oauth_states WHERE expires_at < ?", (time.time(),))
            await db.execute(
                "INSERT INTO oauth_states (state, expires_at) VALUES (?, ?)", (state, expires_at)
            )

    @atomic
    async def consume_oauth_state(self, state: str) -> bool:
        """True once for a state issued and not yet expired; it is gone afterwards."""
        async with self._transaction() as db:
            consumed = await db.execute(
                "DELETE FROM oauth_states WHERE state = ? AND expires_at >= ?",
                (state, time.time()),
            )
            return consumed == 1

    @atomic
    async def reseal(self, target: Vault) -> int:
        """Re-seal every sealed value under `target` in one transaction (`bot rotate-key`);
        returns how many.

        All or nothing: a value this store's vault can't open rolls the whole rotation back, so
        the database never holds values sealed under two different secrets because of it.
        """
        sealed_columns = (
            # (owner the value is bound to, sealed value, row key)
            (
                "SELECT workspace, ciphertext, workspace FROM api_keys",
                "UPDATE api_keys SET ciphertext = ? WHERE workspace = ?",
                API_KEY,
            ),
            (
                "SELECT installation, ciphertext, installation FROM slack_installations",
                "UPDATE slack_installations SET ciphertext = ? WHERE installation = ?",
                SLACK_INSTALLATION,
            ),
            (
                "SELECT workspace, address, id FROM answers_in_flight WHERE address IS NOT NULL",
                "UPDATE answers_in_flight SET address = ? WHERE id = ?",
                ANSWER_ADDRESS,
            ),
        )
        resealed = 0
        async with self._transaction() as db:
            for select, update, kind in sealed_columns:
                # Locked as read (PostgreSQL): a replica left running cannot change a value
                # between its reading and its re-sealing here.
                for owner, sealed, key in await db.fetch(select + self._driver.for_update):
                    plaintext = self._vault.decrypt(bytes(sealed), kind=kind, workspace=owner)
                    again = target.encrypt(plaintext, kind=kind, workspace=owner)
                    await db.execute(update, (again, key))
                    resealed += 1
        self._vault = target
        return resealed
