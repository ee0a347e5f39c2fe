"""Where an interaction's answer can go, and whose conversation and key it belongs to.

A command comes through the app installed to a server (the bot is a member: it can post in the
channel, open threads, and a 15-minute interaction can hand over to a channel message) or to a
person's account (user install: in DMs, group DMs and servers the bot never joined, Discord lets
the app answer only through the interaction itself). The workspace, which picks the API key,
rate limits and stored conversations, is the server for a server install; for a user install it is
that person's own (`discord:user:<id>`): a server that never installed the bot has set no key, and
one that removed the bot must not keep paying for its members' questions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import discord

from adapters.discord.commands import workspace_of
from adapters.discord.surface import MessageChannel

# Channels the bot can start a thread in (text and announcement channels).
THREADABLE = (discord.TextChannel,)
POSTABLE = (discord.TextChannel, discord.Thread, discord.VoiceChannel)
THREAD_TYPES = (
    discord.ChannelType.public_thread,
    discord.ChannelType.private_thread,
    discord.ChannelType.news_thread,
)
THREAD_NAME_LIMIT = 100  # Discord's limit on thread names
ALREADY_HAS_THREAD = 160004  # Discord's code: a thread was already started from that message


def personal_workspace(user_id: int) -> str:
    """The workspace of a person's own install of the app (no server's key applies)."""
    return f"discord:user:{user_id}"


@dataclass(frozen=True)
class Place:
    """Where an interaction came from, as the answer needs it."""

    workspace: str
    key_base: str  # the conversation's key before the question's own id
    channel: MessageChannel | None  # where the bot itself may post; None: it can't
    in_thread: bool

    @property
    def can_thread(self) -> bool:
        return isinstance(self.channel, THREADABLE)


def place_of(interaction: discord.Interaction[Any]) -> Place:
    """The workspace, conversation key prefix and postable channel of an interaction."""
    channel = interaction.channel
    in_thread = channel is not None and channel.type in THREAD_TYPES
    channel_id = interaction.channel_id or 0
    guild_id = interaction.guild_id
    if guild_id is not None and served_by_bot(interaction):
        postable = channel if isinstance(channel, POSTABLE) else None
        return Place(
            workspace_of(guild_id), f"discord:{guild_id}:{channel_id}", postable, in_thread
        )
    workspace = personal_workspace(interaction.user.id)
    return Place(workspace, f"{workspace}:{channel_id}", None, in_thread)


def served_by_bot(interaction: discord.Interaction[Any]) -> bool:
    """Whether the interaction's server installed the app and the bot is a member there (an app
    added without its bot, or one the bot has since left, can't post)."""
    guild_id = interaction.guild_id
    return (
        guild_id is not None
        and interaction.is_guild_integration()
        and interaction.client.get_guild(guild_id) is not None
    )


def thread_name(text: str) -> str:
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return (first_line or "Question")[:THREAD_NAME_LIMIT]
