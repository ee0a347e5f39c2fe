"""What the fake Discord knows and has seen: the bot's application, users, guilds with their
channels and members' permissions, messages, interactions, the commands synced, every REST
request, every message write with its flags, the links Discord's crawler fetched, and every
violation found; plus waiting for any of it to change."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.discord import payloads

FAKE_TOKEN = "fake-bot-token"

_ids = itertools.count(1_300_000_000_000_000_000)


def snowflake() -> str:
    return str(next(_ids))


def shard_of(guild_id: str, count: int) -> int:
    """The shard Discord sends a guild's events down."""
    return (int(guild_id) >> 22) % count


def snowflake_on_shard(shard_id: int, count: int) -> str:
    """A fresh id whose guild Discord would send down shard `shard_id` of `count`: the shard
    comes from the id's timestamp bits, so the id moves on by whole milliseconds (1 << 22)."""
    base = int(snowflake())
    return str(base + (((shard_id - (base >> 22)) % count) << 22))


@dataclass
class Guild:
    id: str
    name: str
    channel_ids: list[str]
    members: dict[str, int]  # user id -> permission bits
    # False: a server where someone installed the app to their account but the bot never
    # joined (a user install): its commands arrive, its events and channels never do.
    bot_member: bool = True


@dataclass
class Interaction:
    id: str
    token: str
    type: int
    guild_id: str
    channel_id: str
    user_id: str
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    original_id: str | None = None
    followup_ids: list[str] = field(default_factory=list)
    created_at: float = 0.0

    @property
    def modal(self) -> dict[str, Any] | None:
        for callback in self.callbacks:
            if callback["type"] == 9:
                data: dict[str, Any] = callback["data"]
                return data
        return None


@dataclass(frozen=True)
class RestCall:
    """A REST request as the fake routes it: `parts` is its path under /api/v10, split at /."""

    method: str
    parts: list[str]
    query: dict[str, str]
    body: Any  # parsed JSON, or None
    port: int = 0  # the fake's port it came in on (see FakeDiscord.listen_also)


@dataclass(frozen=True)
class MessageWrite:
    """One write of a message: `kind` is create, followup, callback or edit; `flags` is what the
    write sent (None: left out, so an edit keeps the message's flags)."""

    kind: str
    message_id: str
    content: str | None
    flags: int | None


class DiscordState:
    """The world the bot sees, and the record of what it did; `changed` wakes `wait_for`."""

    def __init__(
        self,
        *,
        token: str = FAKE_TOKEN,
        clock: Callable[[], float] = time.monotonic,
        application_id: str | None = None,
    ) -> None:
        self.token = token
        self.application_id = application_id or snowflake()
        self.bot_id = self.application_id
        self.clock = clock
        self.guilds: dict[str, Guild] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self.interactions: dict[str, Interaction] = {}
        self._tokens: dict[str, Interaction] = {}  # interaction token -> interaction
        self.commands: dict[str, list[dict[str, Any]]] = {}
        self.command_syncs: list[str] = []
        self.refuse_commands: set[str] = set()  # scopes answering 403 (app not authorised)
        self.requests: list[tuple[str, str, Any]] = []
        self.calls: list[RestCall] = []  # the requests routed, authorised ones only
        self.writes: list[MessageWrite] = []
        self.crawled: list[str] = []  # links Discord fetched to preview them, as people saw them
        self.violations: list[str] = []
        self.rate_limited = 0
        # How long an interaction's token lets the app write its response and follow-ups
        # (Discord: 15 minutes); a test may shorten it. Later writes get 401 and a violation.
        self.token_lifetime = 15 * 60.0
        self.expired_writes = 0
        self.changed = asyncio.Condition()
        self.users[self.bot_id] = payloads.user(self.bot_id, "answerbot", bot=True)

    # -- world building -----------------------------------------------------------------------

    def add_user(self, name: str) -> str:
        user_id = snowflake()
        self.users[user_id] = payloads.user(user_id, name)
        return user_id

    def add_guild(
        self,
        name: str,
        members: dict[str, int],
        *,
        shard: tuple[int, int] | None = None,
        bot_member: bool = True,
    ) -> tuple[str, str]:
        """A guild with one text channel, on shard (id, count) if given, the bot in it unless
        `bot_member` is False; returns (guild id, channel id)."""
        guild_id = snowflake() if shard is None else snowflake_on_shard(*shard)
        channel_id = snowflake()
        self.guilds[guild_id] = Guild(guild_id, name, [channel_id], dict(members), bot_member)
        self.channels[channel_id] = payloads.text_channel(channel_id, guild_id)
        return guild_id, channel_id

    def add_channel(self, guild_id: str, name: str, channel_id: str | None = None) -> str:
        """Another text channel in the guild (with this id, if given); returns its id."""
        channel_id = channel_id or snowflake()
        self.channels[channel_id] = payloads.text_channel(channel_id, guild_id, name)
        self.guilds[guild_id].channel_ids.append(channel_id)
        return channel_id

    def add_forum(self, guild_id: str, name: str = "help") -> str:
        """A forum channel in the guild; returns its id."""
        channel_id = snowflake()
        self.channels[channel_id] = payloads.forum_channel(channel_id, guild_id, name)
        self.guilds[guild_id].channel_ids.append(channel_id)
        return channel_id

    def add_dm(self, user_id: str) -> str:
        """A direct message channel of `user_id` with someone else (where a user-installed
        app's commands work though the bot is not in it); returns its id."""
        channel_id = snowflake()
        self.channels[channel_id] = payloads.dm_channel(channel_id, self.users[user_id])
        return channel_id

    def _add_interaction(self, interaction: Interaction) -> None:
        self.interactions[interaction.id] = interaction
        self._tokens[interaction.token] = interaction

    def _new_message(self, channel_id: str, author: dict[str, Any], content: str) -> dict[str, Any]:
        guild_id = self.channels[channel_id].get("guild_id")
        return payloads.message(snowflake(), channel_id, guild_id, author, content)

    # -- what happened --------------------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
        """Wait until `predicate()` is truthy after some change; returns its value."""

        async def poll() -> Any:
            async with self.changed:
                while not (result := predicate()):
                    await self.changed.wait()
                return result

        return await asyncio.wait_for(poll(), timeout)

    def channel_messages(self, channel_id: str) -> list[dict[str, Any]]:
        return [m for m in self.messages.values() if m["channel_id"] == channel_id]

    def visible_commands(self, guild_id: str) -> list[dict[str, Any]]:
        """The commands synced that a member of the guild sees: the guild's, then global ones."""
        return self.commands.get(guild_id, []) + self.commands.get("global", [])

    def interaction_for_token(self, token: str) -> Interaction | None:
        return self._tokens.get(token)
