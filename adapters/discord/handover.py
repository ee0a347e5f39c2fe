"""The 15-minute switch: an /ask answer still streaming near the interaction token's end goes on
in a channel message, so nothing is lost.

Discord lets an app write an interaction's response and follow-ups for 15 minutes; after that
every edit is refused (401). From DISCORD_HANDOVER_SECONDS after the question, the first write
ends the response with what it shows so far and a pointer, and posts the rest as a channel
message replying to it; every later write of the answer goes to channel messages. The response's
text and the channel messages, read in order, are the answer as stored. Only where the bot itself
can post (a server that installed it); a user install's answer stays in the interaction.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import discord

from adapters.discord.surface import (
    MESSAGE_LIMIT,
    FeedbackButton,
    InteractionSurface,
    MessageChannel,
    MessageSurface,
    Remember,
)
from bot.errors import PlatformError, PlatformRateLimited, PlatformUnavailable
from bot.settings import Settings
from bot.streaming.editor import MARKER
from bot.streaming.splitting import close_open, open_fence
from bot.surface import Final

log = logging.getLogger(__name__)

POINTER = "↓ *Continued in {link}: a command's reply can only be edited for 15 minutes.*"
POINTER_BELOW = "↓ *Continued below: a command's reply can only be edited for 15 minutes.*"
JUMP = "https://discord.com/channels/{guild}/{channel}/{message}"
# Room a pointer takes under the response's text: the sentence and the longest jump link
# (three 20-digit ids), after a blank line.
POINTER_ROOM = len(POINTER) + len(JUMP) + 3 * 20 + 2
POINTER_TRIES = 4  # writes of the pointer before the reply is left as it is
MAX_POINTER_WAIT = 10.0  # seconds: a longer Retry-After is cut short (the token is running out)


@dataclass
class _Moved:
    """A response message whose rest now shows in a channel message, from `cut` on."""

    channel_id: str
    cut: int
    reopen: str  # the code fence the cut fell inside, reopened at the top of the rest

    def rest(self, text: str) -> str:
        return self.reopen + text[self.cut :].lstrip()


class HandoverSurface(InteractionSurface):
    """/ask's answer in the interaction until `deadline` (loop time), in `channel` after it."""

    def __init__(
        self,
        interaction: discord.Interaction[Any],
        settings: Settings,
        remember: Remember,
        buttons: type[FeedbackButton],
        *,
        channel: MessageChannel,
        deadline: float,
    ) -> None:
        super().__init__(interaction, settings, remember, buttons)
        self._settings = settings
        self._remember_id = remember
        self._buttons_kind = buttons
        self._channel = channel
        self._deadline = deadline
        self._shown: dict[str, str] = {}  # response message id -> the text it shows
        self._last: str | None = None  # the response message written last
        self._in_channel: MessageSurface | None = None  # set once handed over
        self._moved: dict[str, _Moved] = {}
        self._posted_in_channel: set[str] = set()

    def _due(self) -> bool:
        return asyncio.get_running_loop().time() >= self._deadline

    async def post(self, text: str, *, final: Final | None = None) -> str:
        if self._in_channel is None and self._due() and self._last is not None:
            await self._hand_over(self._last, None, final=None)
        if self._in_channel is not None:
            return await self._post_in_channel(text, final)
        message_id = await super().post(text, final=final)
        self._shown[message_id] = text
        self._last = message_id
        return message_id

    async def edit(self, message_id: str, text: str, *, final: Final | None = None) -> None:
        if message_id in self._posted_in_channel:
            assert self._in_channel is not None
            await self._in_channel.edit(message_id, text, final=final)
            return
        moved = self._moved.get(message_id)
        if moved is not None:
            assert self._in_channel is not None
            await self._in_channel.edit(moved.channel_id, moved.rest(text), final=final)
            return
        due = self._in_channel is None and self._due()
        if due and await self._hand_over(message_id, text, final=final):
            return
        await super().edit(message_id, text, final=final)
        self._shown[message_id] = text

    async def _hand_over(self, message_id: str, text: str | None, *, final: Final | None) -> bool:
        """End response message `message_id` with its text up to a cut and a pointer, and post
        the rest of `text` (what it should show now; None: what it shows) in the channel.
        False when the answer is better finished in the response (it ends with this write)."""
        shown = _without_marker(self._shown.get(message_id, ""))
        wanted = shown if text is None else text
        cut = _cut(shown, wanted)
        head = close_open(wanted[:cut]).rstrip()
        fence = open_fence(wanted[:cut])
        rest = (f"{fence}\n" if fence else "") + wanted[cut:].lstrip()
        if final is not None and not wanted[cut:].strip():
            return False  # the answer ends now, whole, in the response: nothing to move
        original = self._channel_message(message_id)
        in_channel = MessageSurface(
            self._channel, self._settings, self._remember_id, self._buttons_kind, reference=original
        )
        pointer = POINTER_BELOW
        if _without_marker(rest).strip():
            # Refused here (a 429, an outage), nothing has changed: the editor's retry of this
            # write hands over again.
            moved_to = await in_channel.post(rest, final=final)
            self._posted_in_channel.add(moved_to)
            self._moved[message_id] = _Moved(moved_to, cut, f"{fence}\n" if fence else "")
            pointer = POINTER.format(link=self._jump(moved_to))
        self._in_channel = in_channel
        log.info("interaction answer handed over to the channel after %s", message_id)
        await self._end_reply(message_id, f"{head}\n\n{pointer}" if head else pointer)
        return True

    async def _end_reply(self, message_id: str, text: str) -> None:
        """Write the reply's last text, its pointer; the token has minutes left, so a 429 or an
        outage is waited out here (the editor won't write this message again)."""
        for attempt in range(POINTER_TRIES):
            try:
                await super().edit(message_id, text)
                return
            except PlatformRateLimited as error:
                wait = min(error.retry_after, MAX_POINTER_WAIT)
            except PlatformUnavailable:
                wait = float(attempt + 1)
            except PlatformError:
                break  # refused: the rest is safe in the channel all the same
            await asyncio.sleep(wait)
        log.warning("could not end an interaction's reply with its pointer to the channel")

    async def _post_in_channel(self, text: str, final: Final | None) -> str:
        assert self._in_channel is not None
        message_id = await self._in_channel.post(text, final=final)
        self._posted_in_channel.add(message_id)
        return message_id

    def _channel_message(self, message_id: str) -> discord.PartialMessage:
        channel = self._channel
        assert isinstance(channel, discord.TextChannel | discord.Thread | discord.VoiceChannel)
        return channel.get_partial_message(int(message_id))

    def _jump(self, message_id: str) -> str:
        guild = self._interaction.guild_id or "@me"
        return JUMP.format(guild=guild, channel=self._channel.id, message=message_id)


def _without_marker(text: str) -> str:
    return text[: -len(MARKER)].rstrip() if text.endswith(MARKER) else text


def _cut(shown: str, wanted: str) -> int:
    """Where `wanted` is cut: within what the response already shows, after a space or line
    break, and early enough that the text before it and the pointer fit one message."""
    common = 0
    for a, b in zip(shown, wanted, strict=False):
        if a != b:
            break
        common += 1
    cut = common
    while cut > 0 and not (cut == len(wanted) or wanted[cut].isspace()):
        cut -= 1
    while cut > 0 and len(close_open(wanted[:cut]).rstrip()) + POINTER_ROOM > MESSAGE_LIMIT:
        cut -= 1
        while cut > 0 and not wanted[cut].isspace():
            cut -= 1
    return cut
