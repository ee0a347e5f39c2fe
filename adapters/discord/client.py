"""The Discord client: /ask, "Ask about this message", @mentions, their threads and new posts
in listed forums become one core call each (where commands answer: adapters/discord/answers.py).

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
from adapters.discord.answers import about_message, answer_forum_post, answer_interaction
from adapters.discord.commands import (
    build_tree,
    sync_commands,
    workspace_of,
)
from adapters.discord.places import THREAD_NAME_LIMIT, place_of
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
MESSAGE_MAP_PREFIX = "discord.thread_of:"  # store setting: message id -> conversation
NO_QUESTION = "Ask me a question after the mention, for example: @me how do I reset my password?"
EMPTY_ASK = "Type your question after /ask, for example: /ask how do I reset my password?"
NO_TEXT = "That message has no text to ask about."
ALREADY_ANSWERED = "This question was already answered."
RESTARTING = "The bot is restarting; please ask again in a minute."
MESSAGE_CHANNELS = (
    discord.TextChannel,
    discord.Thread,
    discord.VoiceChannel,
    discord.PartialMessageable,
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
        self.tree = build_tree(
            self, ask=self.ask, ask_about=self.ask_about, keys=core.keys, allowed=self.allowed
        )
        self.forums = frozenset(int(channel) for channel in settings.discord_forum_channels)
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

    async def ask(
        self, interaction: discord.Interaction[Any], question: str, thread: bool = False
    ) -> None:
        question = question.strip()
        if not question:
            await interaction.response.send_message(EMPTY_ASK, ephemeral=True)
            return
        await answer_interaction(self, interaction, question, thread=thread)

    async def ask_about(
        self, interaction: discord.Interaction[Any], message: discord.Message
    ) -> None:
        """ "Ask about this message": the message's text is the question, answered in a thread
        opened on it."""
        question = about_message(message, self.settings.max_question_chars)
        if question is None:
            await interaction.response.send_message(NO_TEXT, ephemeral=True)
            return
        await answer_interaction(self, interaction, question, thread=True, about=message)

    # -- forum posts --------------------------------------------------------------------------

    async def on_thread_create(self, thread: discord.Thread) -> None:
        # discord.py calls this for threads just created (joining an old one is on_thread_join).
        if not self._forum_post(thread) or thread.owner_id == (self.user and self.user.id):
            return
        if self.allowed.allows(thread.guild.id):
            await answer_forum_post(self, thread)

    def _forum_post(self, thread: discord.abc.MessageableChannel | discord.Thread) -> bool:
        """A post in a forum DISCORD_FORUM_CHANNELS lists (a listed text channel's threads are
        not posts: answering each would surprise its members)."""
        return (
            isinstance(thread, discord.Thread)
            and thread.parent_id in self.forums
            and isinstance(thread.parent, discord.ForumChannel | None)
        )

    # -- mentions and follow-ups --------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.guild is None or self.user is None:
            return
        guild_id = message.guild.id
        if not self.allowed.allows(guild_id):
            return
        if message.id == message.channel.id and self._forum_post(message.channel):
            return  # a listed forum's new post: answered from its THREAD_CREATE, once
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
        await self.reply_into(
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

    async def reply_into(
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
        stored = await self.core.conversations.feedback(
            answer_id,
            value,
            user=str(interaction.user.id),
            workspace=place_of(interaction).workspace,
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
