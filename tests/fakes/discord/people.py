"""What people do with the app's newer surfaces in the fake Discord: pick "Ask about this
message" from a message's Apps menu (a MESSAGE command interaction carrying the message), open a
forum post (THREAD_CREATE, then its starter message), and leave messages where the bot sees no
events (someone's DM, a server that only has the app installed to a member's account)."""

from __future__ import annotations

from typing import Any

from tests.fakes.discord import payloads
from tests.fakes.discord.gateway import MESSAGE_CONTENT_INTENT, Gateway
from tests.fakes.discord.state import Interaction, snowflake


class People(Gateway):
    """Message commands, forum posts and messages out of the bot's sight."""

    async def message_command(
        self,
        guild_id: str | None,
        channel_id: str,
        user_id: str,
        name: str,
        message_id: str,
        *,
        user_install: bool = False,
    ) -> Interaction:
        """`user_id` picks the message command `name` from a message's Apps menu: Discord
        sends the message itself, content included, in the interaction's resolved data."""
        command = self._command(guild_id, name, 3, user_install=user_install)
        data: dict[str, Any] = {
            "id": command["id"],
            "name": name,
            "type": 3,
            "target_id": message_id,
            "resolved": {"messages": {message_id: self.messages[message_id]}},
        }
        if command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        return await self._interact(
            2, guild_id, channel_id, user_id, data, user_install=user_install
        )

    async def forum_post(
        self,
        guild_id: str,
        forum_id: str,
        user_id: str,
        title: str,
        content: str,
        *,
        mention_bot: bool = False,
    ) -> dict[str, Any]:
        """`user_id` opens a post in a forum: a thread (THREAD_CREATE, newly created) whose
        starter message, with the thread's id, follows (MESSAGE_CREATE). Returns the thread."""
        if mention_bot:
            content = f"<@{self.bot_id}> {content}"
        forum = self.channels[forum_id]
        starter = self._new_message(forum_id, self.users[user_id], content)
        thread_id = starter["id"]  # a forum post's starter message has the post's id
        thread = payloads.thread(thread_id, forum, user_id, title, 4320)
        self.channels[thread_id] = thread
        starter["channel_id"] = thread_id
        starter["guild_id"] = guild_id
        starter["member"] = payloads.member(self.guilds[guild_id].members.get(user_id, 0))
        starter["mentions"] = [self.users[self.bot_id]] if mention_bot else []
        self.messages[thread_id] = starter
        await self._dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        delivered = dict(starter)
        if not mention_bot and not self._intents & MESSAGE_CONTENT_INTENT:
            delivered["content"] = ""
        await self._dispatch("MESSAGE_CREATE", delivered)
        return thread

    def store_message(self, channel_id: str, user_id: str, content: str) -> dict[str, Any]:
        """A message posted where the bot sees no events (a DM of others, a server it never
        joined): there only for a command to be used on it."""
        message = self._new_message(channel_id, self.users[user_id], content)
        self.messages[message["id"]] = message
        return message

    async def open_thread(self, guild_id: str, channel_id: str, user_id: str, name: str) -> str:
        """`user_id` starts a thread (without a starter message) in a text channel; returns its
        id. The bot hears of it (THREAD_CREATE) as of any thread in its servers."""
        thread_id = snowflake()
        thread = payloads.thread(thread_id, self.channels[channel_id], user_id, name, 1440)
        self.channels[thread_id] = thread
        await self._dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return thread_id
