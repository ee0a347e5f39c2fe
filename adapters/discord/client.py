"""The Discord client: /ask, @mentions and their threads become one core call each.

`build_discord_client` makes the discord.py client for this process's shards (one connection, or
an AutoShardedClient for several), which prints the invite URL and, in the process running shard
0, syncs slash commands when they changed; `adapters.discord.run` connects and supervises it.
No privileged intent is needed: Discord delivers the content of messages that mention the bot;
DISCORD_MESSAGE_CONTENT adds that intent so follow-ups in its threads need no mention.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord

from adapters.discord.allowed import AllowedGuilds
from adapters.discord.commands import (
    build_tree,
    sync_commands,
    workspace_of,
)
from adapters.discord.reopen import address, reopener
from adapters.discord.shards import ShardPlan, report_gateway
from adapters.discord.surface import (
    NO_MENTIONS,
    InteractionSurface,
    MessageChannel,
    MessageSurface,
    feedback_buttons,
    rate_limit_trace,
)
from bot.errors import ANSWER_CRASHED
from bot.journal import Address
from bot.settings import Settings

if TYPE_CHECKING:  # types only: importing an adapter loads no index or model
    from bot.core import Core

log = logging.getLogger(__name__)

# The least the bot needs to read where it is asked, answer, and open a thread per question.
INVITE_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    read_message_history=True,
).value
INVITE_URL = "https://discord.com/oauth2/authorize"
END_STATE_SECONDS = 10.0  # how long a cancelled answer gets to show its end state
THREAD_NAME_LIMIT = 100  # Discord's limit on thread names
MESSAGE_MAP_PREFIX = "discord.thread_of:"  # store setting: message id -> conversation
NO_QUESTION = "Ask me a question after the mention, for example: @me how do I reset my password?"
EMPTY_ASK = "Type your question after /ask, for example: /ask how do I reset my password?"
ALREADY_ANSWERED = "This question was already answered."
RESTARTING = "The bot is restarting; please ask again in a minute."
MESSAGE_CHANNELS = (
    discord.TextChannel,
    discord.Thread,
    discord.VoiceChannel,
    discord.PartialMessageable,
)
THREAD_TYPES = (
    discord.ChannelType.public_thread,
    discord.ChannelType.private_thread,
    discord.ChannelType.news_thread,
)


def invite_url(application_id: int) -> str:
    return (
        f"{INVITE_URL}?client_id={application_id}"
        f"&scope=bot+applications.commands&permissions={INVITE_PERMISSIONS}"
    )


class DiscordBot(discord.Client):
    """A discord.py client that hands every question to the core."""

    def __init__(
        self, settings: Settings, core: Core, plan: ShardPlan | None = None, **options: Any
    ) -> None:
        self.plan = plan or ShardPlan.of(settings)
        intents = discord.Intents.default()
        # Privileged, so off unless asked for: Discord sends the content of mentions without it.
        intents.message_content = settings.discord_message_content
        super().__init__(
            intents=intents,
            allowed_mentions=NO_MENTIONS,
            http_trace=rate_limit_trace(),
            **self.plan.client_options(),
            **options,
        )
        self.settings = settings
        self.core = core
        # Servers not in DISCORD_ALLOWED_GUILDS: commands refused, mentions ignored.
        self.allowed = AllowedGuilds(settings.discord_allowed_guilds)
        self.tree = build_tree(self, ask=self.ask, keys=core.keys, allowed=self.allowed)
        self.buttons = feedback_buttons(self.on_feedback)
        self._answering: set[asyncio.Task[Any]] = set()
        self._closing = False

    async def close(self) -> None:
        """Give answers in flight SHUTDOWN_GRACE_SECONDS to finish (a question arriving
        meanwhile is asked to come back), end the rest with the interrupted notice, then
        disconnect. Cancelling at once would cut off answers a moment from done."""
        self._closing = True
        current = asyncio.current_task()
        tasks = [t for t in self._answering if not t.done() and t is not current]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.settings.shutdown_grace_seconds)
            for task in late:
                task.cancel()
            if late:  # their end states go out on the connection closed next
                await asyncio.wait(late, timeout=END_STATE_SECONDS)
        await super().close()

    async def setup_hook(self) -> None:
        self.add_dynamic_items(self.buttons)
        # Logged in: answers a dead process left in channels can be found and ended now.
        self.core.journal.mend_with("discord", reopener(self))
        application_id = self.application_id
        assert application_id is not None  # known after login
        print(f"Invite the Discord bot: {invite_url(application_id)}", flush=True)
        await report_gateway(self.http, self.plan)
        if not self.plan.syncs_commands:
            log.info("running %s: the process running shard 0 syncs slash commands", self.plan)
            return
        try:
            await sync_commands(self.tree, self.core.store, self.settings, application_id)
        except discord.HTTPException as error:
            # Answering mentions still works; the hash stays old, so the next start retries.
            log.error("syncing slash commands failed: HTTP %s, code %s", error.status, error.code)

    # -- /ask ---------------------------------------------------------------------------------

    async def ask(self, interaction: discord.Interaction[Any], question: str) -> None:
        guild_id = interaction.guild_id
        question = question.strip()
        if guild_id is None or not question:
            await interaction.response.send_message(EMPTY_ASK, ephemeral=True)
            return
        try:
            await interaction.response.defer(thinking=True)
        except discord.HTTPException as error:
            log.warning("could not defer /ask %s: HTTP %s", interaction.id, error.status)
            return
        channel_id = interaction.channel_id or 0
        in_thread = interaction.channel is not None and interaction.channel.type in THREAD_TYPES
        thread_key = f"discord:{guild_id}:{channel_id}"
        if not in_thread:
            thread_key += f":{interaction.id}"
        workspace = workspace_of(guild_id)
        surface = InteractionSurface(
            interaction, self.settings, self.remembering(workspace, thread_key), self.buttons
        )
        await self._reply(
            surface,
            thread_key=thread_key,
            workspace=workspace,
            question=question,
            author=str(interaction.user.id),
            event_id=f"discord:interaction:{interaction.id}",
            on_failure=lambda text: interaction.edit_original_response(content=text),
        )

    # -- mentions and follow-ups --------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.guild is None or self.user is None:
            return
        guild_id = message.guild.id
        if not self.allowed.allows(guild_id):
            return
        workspace = workspace_of(guild_id)
        route = await self._route(message, workspace)
        if route is None:
            return
        thread_key, channel, reference = route
        question = _strip_mentions(message.content, self.user.id)
        if not question:
            if self._mentioned(message):
                await _quietly(message.reply(NO_QUESTION, allowed_mentions=NO_MENTIONS))
            else:
                log.debug("follow-up %s had no readable content", message.id)
            return
        remember = self.remembering(workspace, thread_key)
        await remember(str(message.id))
        surface = MessageSurface(
            channel, self.settings, remember, self.buttons, reference=reference
        )
        await self._reply(
            surface,
            thread_key=thread_key,
            workspace=workspace,
            question=question,
            author=str(message.author.id),
            event_id=f"discord:message:{message.id}",
            on_failure=lambda text: channel.send(text, allowed_mentions=NO_MENTIONS),
            where=address(channel.id, workspace, thread_key),
        )

    async def _route(
        self, message: discord.Message, workspace: str
    ) -> tuple[str, MessageChannel, discord.Message | None] | None:
        """Which conversation a message belongs to, where to answer, and what to reply to."""
        conversations = self.core.conversations
        guild_id = message.guild.id if message.guild else 0
        channel = message.channel
        if not isinstance(channel, MESSAGE_CHANNELS):
            return None  # e.g. a stage channel's chat: not a place the bot answers
        channel_key = f"discord:{guild_id}:{channel.id}"
        if await conversations.is_followup(channel_key):
            return channel_key, channel, message  # a thread the bot answers in
        reference = message.reference
        if reference is not None and reference.message_id is not None:
            key = await conversations.linked(
                workspace, f"{MESSAGE_MAP_PREFIX}{reference.message_id}"
            )
            if key is not None:
                return key, channel, message  # a reply to one of the bot's answers
        if not self._mentioned(message):
            return None
        if isinstance(channel, discord.Thread):
            return channel_key, channel, message
        if self.settings.discord_thread_per_question and isinstance(channel, discord.TextChannel):
            thread = await self._open_thread(message)
            if thread is not None:
                return f"discord:{guild_id}:{thread.id}", thread, None
        return f"{channel_key}:{message.id}", channel, message

    async def _open_thread(self, message: discord.Message) -> discord.Thread | None:
        name = _strip_mentions(message.content, self.user.id if self.user else 0)
        name = (name or "Question")[:THREAD_NAME_LIMIT]
        try:
            return await message.create_thread(name=name)
        except discord.HTTPException as error:
            # Missing Create Public Threads: answer in the channel instead.
            log.warning("could not open a thread for %s: HTTP %s", message.id, error.status)
            return None

    def _mentioned(self, message: discord.Message) -> bool:
        return self.user is not None and any(u.id == self.user.id for u in message.mentions)

    def remembering(self, workspace: str, thread_key: str) -> Callable[[str], Awaitable[None]]:
        async def remember(message_id: str) -> None:
            await self.core.conversations.link(
                workspace, f"{MESSAGE_MAP_PREFIX}{message_id}", thread_key
            )

        return remember

    async def _reply(
        self,
        surface: InteractionSurface | MessageSurface,
        *,
        thread_key: str,
        workspace: str,
        question: str,
        author: str,
        event_id: str,
        on_failure: Callable[[str], Awaitable[Any]],
        where: Address | None = None,
    ) -> None:
        if self._closing:  # Discord won't deliver it again: say so rather than drop it
            await _quietly(on_failure(RESTARTING))
            return
        task = asyncio.current_task()
        if task is not None:
            self._answering.add(task)
        try:
            reply = await self.core.conversations.reply(
                surface=surface,
                thread_key=thread_key,
                workspace=workspace,
                question=question,
                author=author,
                event_id=event_id,
                address=where,
            )
        except Exception:
            # The core leaves its own messages in an end state; this is the last resort.
            log.exception("answering %s failed", event_id)
            await _quietly(on_failure(ANSWER_CRASHED))
            return
        finally:
            if task is not None:
                self._answering.discard(task)
        if reply is None and isinstance(surface, InteractionSurface):
            await _quietly(on_failure(ALREADY_ANSWERED))

    # -- feedback -----------------------------------------------------------------------------

    async def on_feedback(
        self, interaction: discord.Interaction[Any], answer_id: int, value: int
    ) -> None:
        stored = interaction.guild_id is not None and await self.core.conversations.feedback(
            answer_id,
            value,
            user=str(interaction.user.id),
            workspace=workspace_of(interaction.guild_id),
        )
        text = "Thanks for the feedback." if stored else "That answer can't take feedback."
        await interaction.response.send_message(text, ephemeral=True)


def _strip_mentions(content: str, user_id: int) -> str:
    return re.sub(rf"<@!?{user_id}>", "", content).strip()


async def _quietly(call: Awaitable[Any]) -> None:
    try:
        await call
    except discord.HTTPException as error:
        log.warning("Discord refused a message: HTTP %s", error.status)


class ShardedDiscordBot(DiscordBot, discord.AutoShardedClient):
    """The same bot running several shards on one connection each, in this one process."""


def build_discord_client(settings: Settings, core: Core, **options: Any) -> DiscordBot:
    # The bot never joins voice: discord.py's warnings about missing voice libraries would only
    # send operators looking for a problem that isn't there.
    discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
    plan = ShardPlan.of(settings)
    kind = ShardedDiscordBot if plan.several else DiscordBot
    log.info("Discord: %s", plan)
    return kind(settings, core, plan, **options)
