"""Finding a Discord answer again after a restart, to end one a dead process left behind.

The journal keeps where each mention's answer is shown (its channel); at start-up the core hands
those of dead processes back here and gets a `MessageSurface` on that channel that can edit the
answer's messages by id. /ask answers are not journalled with an address: their messages belong
to an interaction whose token lasts 15 minutes, so they are stored as failed but not mended.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from adapters.discord.surface import MessageSurface, platform_call
from bot.journal import Address, Reopen
from bot.surface import Final, Surface

if TYPE_CHECKING:
    from adapters.discord.client import DiscordBot


def address(channel_id: int, workspace: str, thread_key: str) -> Address:
    return Address(
        "discord", {"channel": channel_id, "workspace": workspace, "thread_key": thread_key}
    )


def reopener(client: DiscordBot) -> Reopen:
    async def reopen(where: dict[str, Any]) -> Surface | None:
        # A partial channel: editing needs only its id, and the gateway may not be up yet.
        channel = client.get_partial_messageable(int(where["channel"]))
        remember = client.remembering(str(where["workspace"]), str(where["thread_key"]))
        return _Reopened(channel, client.settings, remember, client.buttons)

    return reopen


class _Reopened(MessageSurface):
    """A mention's answer surface for messages another process posted: fetched before an edit."""

    async def edit(self, message_id: str, text: str, *, final: Final | None = None) -> None:
        if message_id not in self._posted:
            async with platform_call("finding an interrupted answer"):
                self._posted[message_id] = await self._channel.fetch_message(int(message_id))
        await super().edit(message_id, text, final=final)
