"""The fake Discord's gateway: the handshake discord.py expects (HELLO, IDENTIFY -> READY and a
GUILD_CREATE per guild, heartbeats, RESUME), and what people do, sent down it as events:
slash commands, modal submits and button clicks (INTERACTION_CREATE), messages
(MESSAGE_CREATE, without their content unless they mention the bot or it has the intent)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.discord import payloads
from tests.fakes.discord.payloads import MEMBER_PERMISSIONS
from tests.fakes.discord.state import FAKE_TOKEN, DiscordState, Interaction, snowflake

HEARTBEAT_INTERVAL_MS = 41_250
MESSAGE_CONTENT_INTENT = 1 << 15


class Gateway(DiscordState):
    """The gateway socket and the events it carries; `ready` is set once the bot identified."""

    def __init__(
        self,
        *,
        token: str = FAKE_TOKEN,
        clock: Callable[[], float] = time.monotonic,
        application_id: str | None = None,
    ) -> None:
        super().__init__(token=token, clock=clock, application_id=application_id)
        self.identifies = 0
        self.resumes = 0
        self.identify_payloads: list[dict[str, Any]] = []
        self.ready = asyncio.Event()
        self.port = 0
        self._ws: web.WebSocketResponse | None = None
        self._seq = 0

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def drop_connection(self, code: int = 4000) -> None:
        """Close the gateway socket like Discord does on its side (4000: unknown error)."""
        assert self._ws is not None
        await self._ws.close(code=code)

    @property
    def _intents(self) -> int:
        return int(self.identify_payloads[-1]["intents"]) if self.identify_payloads else 0

    # -- driving the bot ----------------------------------------------------------------------

    async def slash(
        self, guild_id: str, channel_id: str, user_id: str, name: str, **options: str
    ) -> Interaction:
        command = next(c for c in self.visible_commands(guild_id) if c["name"] == name)
        data: dict[str, Any] = {
            "id": command["id"],
            "name": name,
            "type": 1,
            "options": [{"name": k, "type": 3, "value": v} for k, v in options.items()],
        }
        if command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        return await self._interact(2, guild_id, channel_id, user_id, data)

    async def submit_modal(
        self, guild_id: str, channel_id: str, user_id: str, modal: dict[str, Any], value: str
    ) -> Interaction:
        rows = [
            {
                "type": 1,
                "components": [
                    {"type": 4, "custom_id": item["custom_id"], "value": value}
                    for item in row["components"]
                ],
            }
            for row in modal["components"]
        ]
        data = {"custom_id": modal["custom_id"], "components": rows}
        return await self._interact(5, guild_id, channel_id, user_id, data)

    async def click(
        self, guild_id: str, channel_id: str, user_id: str, message_id: str, custom_id: str
    ) -> Interaction:
        data = {"custom_id": custom_id, "component_type": 2}
        extra = {"message": self.messages[message_id]}
        return await self._interact(3, guild_id, channel_id, user_id, data, extra)

    async def say(
        self,
        guild_id: str,
        channel_id: str,
        user_id: str,
        content: str,
        *,
        mention_bot: bool = False,
        reply_to: str | None = None,
    ) -> dict[str, Any]:
        """A user posts a message; mentioning the bot puts it in `mentions` and the content."""
        if mention_bot:
            content = f"<@{self.bot_id}> {content}"
        message = self._new_message(channel_id, self.users[user_id], content)
        message["guild_id"] = guild_id
        message["member"] = payloads.member(self.guilds[guild_id].members.get(user_id, 0))
        message["mentions"] = [self.users[self.bot_id]] if mention_bot else []
        if reply_to is not None:
            message["type"] = 19
            message["message_reference"] = {
                "type": 0,
                "message_id": reply_to,
                "channel_id": channel_id,
                "guild_id": guild_id,
            }
        self.messages[message["id"]] = message
        delivered = dict(message)
        if not mention_bot and not self._intents & MESSAGE_CONTENT_INTENT:
            delivered["content"] = ""  # Discord withholds content without the intent
        await self._dispatch("MESSAGE_CREATE", delivered)
        return message

    # -- the socket -----------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws = ws
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}})
        async for frame in ws:
            if frame.type != WSMsgType.TEXT:
                continue
            payload = json.loads(frame.data)
            op = payload.get("op")
            if op == 1:
                await ws.send_json({"op": 11})
            elif op == 2:
                await self._identify(ws, payload["d"])
            elif op == 6:
                self.resumes += 1
                await self._dispatch("RESUMED", {})
            async with self.changed:
                self.changed.notify_all()
        return ws

    async def _identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        self.identifies += 1
        self.identify_payloads.append(data)
        if data.get("token") != self.token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return
        await self._dispatch(
            "READY",
            {
                "v": 10,
                "user": self.users[self.bot_id],
                "guilds": [{"id": gid, "unavailable": True} for gid in self.guilds],
                "session_id": f"session-{self.identifies}",
                "resume_gateway_url": self.gateway_url,
                "application": {"id": self.application_id, "flags": 0},
                "private_channels": [],
                "relationships": [],
            },
        )
        for guild in self.guilds.values():
            await self._dispatch(
                "GUILD_CREATE",
                payloads.guild_create(
                    guild.id,
                    guild.name,
                    guild.members,
                    [self.channels[c] for c in guild.channel_ids],
                    self.users[self.bot_id],
                    snowflake(),
                ),
            )
        self.ready.set()

    async def _dispatch(self, event: str, data: dict[str, Any]) -> None:
        assert self._ws is not None, "the bot has not connected to the gateway"
        self._seq += 1
        await self._ws.send_json({"op": 0, "t": event, "s": self._seq, "d": data})

    async def _interact(
        self,
        kind: int,
        guild_id: str,
        channel_id: str,
        user_id: str,
        data: dict[str, Any],
        extra: dict[str, Any] | None = None,
    ) -> Interaction:
        interaction = Interaction(
            snowflake(),
            f"itoken-{snowflake()}",
            kind,
            guild_id,
            channel_id,
            user_id,
            created_at=self.clock(),
        )
        self._add_interaction(interaction)
        await self._dispatch(
            "INTERACTION_CREATE",
            {
                "id": interaction.id,
                "application_id": self.application_id,
                "type": kind,
                "data": data,
                "guild_id": guild_id,
                "channel_id": channel_id,
                "channel": self.channels[channel_id],
                "member": payloads.member(
                    self.guilds[guild_id].members.get(user_id, 0), self.users[user_id]
                ),
                "token": interaction.token,
                "version": 1,
                "app_permissions": str(MEMBER_PERMISSIONS),
                "locale": "en-US",
                "guild_locale": "en-US",
                "entitlements": [],
                "authorizing_integration_owners": {"0": guild_id},
                "context": 0,
                "attachment_size_limit": 10_485_760,
                **(extra or {}),
            },
        )
        return interaction
