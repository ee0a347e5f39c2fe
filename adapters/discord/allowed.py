"""The Discord servers the bot serves (DISCORD_ALLOWED_GUILDS): in any other, its slash commands
get a private refusal and its mentions are ignored; no entry means every server.

Anyone can invite a public bot, and every server it is in would be answered from the operator's
documents (and, under FALLBACK_KEY_SCOPE, with the operator's key). The bot stays in a server it
doesn't serve rather than leaving it: a mistyped id would otherwise make it walk out of the
operator's own servers at start, which only a server admin's new invite undoes, and a refusal
tells that server's members why the bot won't help, where a departure would say nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import discord

log = logging.getLogger(__name__)

NOT_ALLOWED = "This bot isn't available in this server; ask the person who runs it."
SERVERS_ONLY = "This bot answers only in the servers its operator chose, not in direct messages."


class AllowedGuilds:
    """DISCORD_ALLOWED_GUILDS, asked about one interaction's or message's server."""

    def __init__(self, entries: Iterable[str]) -> None:
        self._entries = frozenset(int(entry) for entry in entries)
        self._logged: set[int] = set()  # one log line per refused server per process

    def allows(self, guild_id: int | None) -> bool:
        """Whether the bot serves this server; direct messages (None) are answered as before
        (the commands refuse them themselves)."""
        if not self._entries or guild_id is None or guild_id in self._entries:
            return True
        if guild_id not in self._logged:
            self._logged.add(guild_id)
            log.warning("Discord server %s is not in DISCORD_ALLOWED_GUILDS: not served", guild_id)
        return False

    async def check(self, interaction: discord.Interaction[Any]) -> bool:
        """The command tree's check before any command: a private refusal where not served.

        A command in a DM or group DM (the app installed to a person's account) is refused too
        when servers are listed: an operator who chose servers did not choose everyone's DMs.
        """
        if interaction.guild_id is None and self._entries:
            await interaction.response.send_message(SERVERS_ONLY, ephemeral=True)
            return False
        if self.allows(interaction.guild_id):
            return True
        await interaction.response.send_message(NOT_ALLOWED, ephemeral=True)
        return False
