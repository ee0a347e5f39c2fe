"""Where a command's answer is shown: in the interaction's reply, in a thread it opens, or in a
forum post; and what "Ask about this message" asks.

/ask answers in its reply (handed over to a channel message near the token's 15 minutes, see
handover.py); `/ask thread:true` puts the question in its reply and answers in a thread opened
on it; "Ask about this message" answers in a thread opened on that message (only the asker sees
the pointer to it). Where no thread can be opened (a thread, a DM, a server the bot isn't in, a
refusal) the answer is shown in place. A new post in a forum listed in DISCORD_FORUM_CHANNELS
is answered in the post. Threads are conversations like a mention's thread: follow-ups there
continue them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import discord

from adapters.discord.handover import HandoverSurface
from adapters.discord.places import ALREADY_HAS_THREAD, Place, place_of, thread_name
from adapters.discord.reopen import address
from adapters.discord.surface import (
    NO_MENTIONS,
    InteractionSurface,
    MessageSurface,
    edit_interaction_message,
)

if TYPE_CHECKING:
    from adapters.discord.client import DiscordBot

log = logging.getLogger(__name__)

ABOUT = "Explain this message:"  # leads the quoted message: the model is to explain or answer it
QUESTION_HEADER = "**Question:** {question}"  # /ask thread:true's reply, the thread under it
ANSWERING_IN = "Answering in <#{thread}>."
ThreadLike = discord.Thread | discord.PartialMessageable


def about_message(message: discord.Message, limit: int) -> str | None:
    """The question "Ask about this message" asks: the message's text, quoted after ABOUT (its
    words are what retrieval searches for); None when it has no text."""
    text = message.content.strip()
    if not text:
        return None
    question = ABOUT + "\n"
    for line in text.splitlines():
        quoted = f"\n> {line}"
        if len(question) + len(quoted) > limit:  # the core refuses longer questions
            question += quoted[: limit - len(question)]
            break
        question += quoted
    return question


async def answer_interaction(
    client: DiscordBot,
    interaction: discord.Interaction[Any],
    question: str,
    *,
    thread: bool,
    about: discord.Message | None = None,
) -> None:
    """Answer a command's question: in a thread when asked and possible, else in its reply."""
    place = place_of(interaction)
    threading = thread and place.can_thread
    try:
        # The pointer to a message's thread is for the asker only; /ask's reply is the question.
        await interaction.response.defer(thinking=True, ephemeral=threading and about is not None)
    except discord.HTTPException as error:
        log.warning("could not defer interaction %s: HTTP %s", interaction.id, error.status)
        return
    asked = asyncio.get_running_loop().time()
    if threading:
        opened = await _open_thread(client, interaction, place, question, about)
        if opened is not None:
            await _answer_in_thread(client, interaction, opened, place, question, about)
            return
    thread_key = place.key_base if place.in_thread else f"{place.key_base}:{interaction.id}"
    remember = client.remembering(place.workspace, thread_key)
    settings = client.settings
    surface: InteractionSurface
    if place.channel is not None:
        deadline = asked + settings.discord_handover_seconds
        surface = HandoverSurface(
            interaction,
            settings,
            remember,
            client.buttons,
            channel=place.channel,
            deadline=deadline,
        )
    else:  # a user install: only the interaction can show the answer
        surface = InteractionSurface(interaction, settings, remember, client.buttons)
    await client.reply_into(
        surface,
        thread_key=thread_key,
        workspace=place.workspace,
        question=question,
        author=str(interaction.user.id),
        event_id=f"discord:interaction:{interaction.id}",
        on_failure=lambda text: interaction.edit_original_response(content=text),
    )


async def _open_thread(
    client: DiscordBot,
    interaction: discord.Interaction[Any],
    place: Place,
    question: str,
    about: discord.Message | None,
) -> ThreadLike | None:
    """The thread the answer goes in: opened on `about`, or on /ask's reply showing the question;
    None when Discord refuses (no Create Public Threads permission, say)."""
    channel = place.channel
    assert isinstance(channel, discord.TextChannel)
    try:
        if about is not None:
            return await channel.get_partial_message(about.id).create_thread(
                name=thread_name(about.content)
            )
        header = QUESTION_HEADER.format(question=question)
        reply_id = await edit_interaction_message(interaction, None, header, None)
        return await channel.get_partial_message(int(reply_id)).create_thread(
            name=thread_name(question)
        )
    except discord.HTTPException as error:
        if about is not None and error.code == ALREADY_HAS_THREAD:
            # Asked about before: answer in the thread the message already has (its id).
            existing = client.get_channel(about.id)
            if isinstance(existing, discord.Thread):
                return existing
            return client.get_partial_messageable(about.id, guild_id=interaction.guild_id)
        log.warning("could not open a thread for %s: HTTP %s", interaction.id, error.status)
        return None


async def _answer_in_thread(
    client: DiscordBot,
    interaction: discord.Interaction[Any],
    thread: ThreadLike,
    place: Place,
    question: str,
    about: discord.Message | None,
) -> None:
    thread_key = f"discord:{interaction.guild_id}:{thread.id}"
    if about is not None:
        try:
            await interaction.edit_original_response(
                content=ANSWERING_IN.format(thread=thread.id), allowed_mentions=NO_MENTIONS
            )
        except discord.HTTPException as error:
            log.warning("could not point %s to its thread: HTTP %s", interaction.id, error.status)
    remember = client.remembering(place.workspace, thread_key)
    surface = MessageSurface(thread, client.settings, remember, client.buttons)
    await client.reply_into(
        surface,
        thread_key=thread_key,
        workspace=place.workspace,
        question=question,
        author=str(interaction.user.id),
        event_id=f"discord:interaction:{interaction.id}",
        on_failure=lambda text: thread.send(
            text, allowed_mentions=NO_MENTIONS, suppress_embeds=True
        ),
        where=address(thread.id, place.workspace, thread_key),
    )


def forum_post_question(thread: discord.Thread, starter: discord.Message | None, bot: int) -> str:
    """A forum post's question: its title, then its text (readable with DISCORD_MESSAGE_CONTENT,
    or when it mentions the bot)."""
    body = starter.content.replace(f"<@{bot}>", "").replace(f"<@!{bot}>", "") if starter else ""
    body = body.strip()
    return thread.name if not body or body == thread.name else f"{thread.name}\n\n{body}"


async def answer_forum_post(client: DiscordBot, thread: discord.Thread) -> None:
    """Answer a new post in a listed forum, in the post, once."""
    guild_id = thread.guild.id
    workspace = f"discord:{guild_id}"
    starter = thread.starter_message
    if starter is None:
        try:  # the post's starter message has the post's id; it may not have arrived yet
            starter = await thread.fetch_message(thread.id)
        except discord.HTTPException as error:
            log.info("forum post %s: starter message unreadable (HTTP %s)", thread.id, error.status)
    if starter is not None and starter.author.bot:
        return  # another bot's post (an announcement feed, say): not a question
    bot_id = client.user.id if client.user else 0
    thread_key = f"discord:{guild_id}:{thread.id}"
    remember = client.remembering(workspace, thread_key)
    surface = MessageSurface(thread, client.settings, remember, client.buttons)
    await client.reply_into(
        surface,
        thread_key=thread_key,
        workspace=workspace,
        question=forum_post_question(thread, starter, bot_id),
        author=str(thread.owner_id),
        # The starter message's own id: were it to mention the bot, it is the same question.
        event_id=f"discord:message:{thread.id}",
        on_failure=lambda text: thread.send(
            text, allowed_mentions=NO_MENTIONS, suppress_embeds=True
        ),
        where=address(thread.id, workspace, thread_key),
    )
