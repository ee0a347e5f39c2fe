"""The fake Discord's gateway: the handshake discord.py expects (HELLO, IDENTIFY -> READY and a
GUILD_CREATE per guild of the session's shard, heartbeats, RESUME), any number of sessions at
once (one per shard), and what people do, sent down the session carrying their guild: slash
commands, modal submits and button clicks (INTERACTION_CREATE), messages (MESSAGE_CREATE,
without their content unless they mention the bot or it has the intent)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.discord import payloads
from tests.fakes.discord.payloads import MEMBER_PERMISSIONS
from tests.fakes.discord.sessions import (
    INVALID_SHARD,
    MAX_GUILDS_PER_SHARD,
    SHARDING_REQUIRED,
    Sent,
    Session,
    identify_problem,
    shard_pair,
)
from tests.fakes.discord.state import FAKE_TOKEN, DiscordState, Interaction, snowflake

HEARTBEAT_INTERVAL_MS = 41_250
MESSAGE_CONTENT_INTENT = 1 << 15


class Gateway(DiscordState):
    """The gateway sockets and the events they carry; `ready` is set each time a session
    identified. `sessions` lists every session in the order they identified, `dispatched` every
    event sent with the session it went down."""

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
        # Set to an unset event to keep READY from every session identifying until it is set.
        self.hold_ready: asyncio.Event | None = None
        self.port = 0
        self.sessions: list[Session] = []
        self.dispatched: list[Sent] = []
        self.max_guilds_per_shard = MAX_GUILDS_PER_SHARD
        self._sockets: list[web.WebSocketResponse] = []

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def drop_connection(self, code: int = 4000) -> None:
        """Close the latest gateway socket like Discord does on its side (4000: unknown error)."""
        assert self._sockets, "the bot has not connected to the gateway"
        await self._sockets[-1].close(code=code)

    async def close_sockets(self) -> None:
        for ws in self._sockets:
            await ws.close()

    def live_shards(self) -> set[int]:
        """The shard ids with a live session (an unsharded session is shard 0)."""
        return {s.shard[0] if s.shard else 0 for s in self.sessions if s.live}

    def received(self, event: str, shard: int | None) -> list[dict[str, Any]]:
        """The `event`s sent down sessions of `shard` (None: sessions without sharding)."""
        return [
            sent.data
            for sent in self.dispatched
            if sent.event == event and (sent.shard[0] if sent.shard else None) == shard
        ]

    @property
    def _intents(self) -> int:
        return int(self.identify_payloads[-1]["intents"]) if self.identify_payloads else 0

    # -- driving the bot ----------------------------------------------------------------------

    async def slash(
        self,
        guild_id: str | None,
        channel_id: str,
        user_id: str,
        name: str,
        *,
        user_install: bool = False,
        **options: str | bool,
    ) -> Interaction:
        """`user_id` runs slash command `name` (in a DM when `guild_id` is None); with
        `user_install`, through the app installed to their account rather than the server."""
        command = self._command(guild_id, name, 1, user_install=user_install)
        data: dict[str, Any] = {
            "id": command["id"],
            "name": name,
            "type": 1,
            "options": [
                {"name": k, "type": 5 if isinstance(v, bool) else 3, "value": v}
                for k, v in options.items()
            ],
        }
        if command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        return await self._interact(
            2, guild_id, channel_id, user_id, data, user_install=user_install
        )

    def _command(
        self, guild_id: str | None, name: str, kind: int, *, user_install: bool = False
    ) -> dict[str, Any]:
        """The synced command a person can run there; in a DM, or through a user install, only
        global commands that allow it (Discord shows no others)."""
        listed = self.visible_commands(guild_id) if guild_id else self.commands.get("global", [])
        found = [c for c in listed if c["name"] == name and c.get("type", 1) == kind]
        assert found, f"no {name!r} command of type {kind} is synced where it was used"
        command = found[0]
        installs, contexts = command.get("integration_types"), command.get("contexts")
        install = 1 if user_install else 0
        context = 0 if guild_id else 2
        assert installs is None or install in installs, f"{name!r} can't be installed so"
        assert contexts is None or context in contexts, (
            f"{name!r} isn't offered in context {context}"
        )
        return command

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
        self,
        guild_id: str | None,
        channel_id: str,
        user_id: str,
        message_id: str,
        custom_id: str,
        *,
        user_install: bool = False,
    ) -> Interaction:
        data = {"custom_id": custom_id, "component_type": 2}
        extra = {"message": self.messages[message_id]}
        return await self._interact(
            3, guild_id, channel_id, user_id, data, extra, user_install=user_install
        )

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
        self._sockets.append(ws)
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
                await self._resume(ws, payload["d"])
            async with self.changed:
                self.changed.notify_all()
        return ws

    async def _identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        self.identifies += 1
        self.identify_payloads.append(data)
        if (problem := identify_problem(data)) is not None:
            self.violations.append(problem)
        if data.get("token") != self.token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return
        shard = shard_pair(data.get("shard")) if "shard" in data else None
        if shard is not None and not 0 <= shard[0] < shard[1]:
            await ws.close(code=INVALID_SHARD, message=b"Invalid shard.")
            return
        session = Session.open(ws, shard)
        guilds = [g for g in self.guilds.values() if g.bot_member and session.carries(g.id)]
        if len(guilds) > self.max_guilds_per_shard:
            await ws.close(code=SHARDING_REQUIRED, message=b"Sharding required.")
            return
        self.sessions.append(session)
        ready: dict[str, Any] = {
            "v": 10,
            "user": self.users[self.bot_id],
            "guilds": [{"id": guild.id, "unavailable": True} for guild in guilds],
            "session_id": session.id,
            "resume_gateway_url": self.gateway_url,
            "application": {"id": self.application_id, "flags": 0},
            "private_channels": [],
            "relationships": [],
        }
        if shard is not None:
            ready["shard"] = list(shard)
        if self.hold_ready is not None:
            await self.hold_ready.wait()
        await self._send(session, "READY", ready)
        for guild in guilds:
            await self._send(
                session,
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

    async def _resume(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        # The session goes on on the new socket: its events are sent down it from now on.
        self.resumes += 1
        session = next((s for s in self.sessions if s.id == data.get("session_id")), None)
        if session is None:
            await ws.send_json({"op": 9, "d": False})  # invalid session: identify again
            return
        session.ws = ws
        await self._send(session, "RESUMED", {})

    async def _send(self, session: Session, event: str, data: dict[str, Any]) -> None:
        self.dispatched.append(await session.send(event, data))

    async def _dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a guild's event down the latest live session carrying that guild, as Discord
        does: never down another shard's session."""
        guild_id = data.get("guild_id")
        carrying = [s for s in self.sessions if s.live and s.carries(guild_id)]
        assert carrying, f"no connected session carries guild {guild_id}"
        await self._send(carrying[-1], event, data)

    async def _interact(
        self,
        kind: int,
        guild_id: str | None,
        channel_id: str,
        user_id: str,
        data: dict[str, Any],
        extra: dict[str, Any] | None = None,
        *,
        user_install: bool = False,
    ) -> Interaction:
        interaction = Interaction(
            snowflake(),
            f"itoken-{snowflake()}",
            kind,
            guild_id or "",
            channel_id,
            user_id,
            created_at=self.clock(),
        )
        self._add_interaction(interaction)
        # Who installed the app for this interaction: the server (0) or the person (1).
        owners = {"1": user_id} if user_install else {"0": guild_id}
        where: dict[str, Any]
        if guild_id is not None:
            where = {
                "guild_id": guild_id,
                "member": payloads.member(
                    self.guilds[guild_id].members.get(user_id, 0), self.users[user_id]
                ),
                "guild_locale": "en-US",
                "context": 0,
            }
        else:
            where = {"user": self.users[user_id], "context": 2}
        await self._dispatch(
            "INTERACTION_CREATE",
            {
                "id": interaction.id,
                "application_id": self.application_id,
                "type": kind,
                "data": data,
                "channel_id": channel_id,
                "channel": self.channels[channel_id],
                "token": interaction.token,
                "version": 1,
                "app_permissions": str(MEMBER_PERMISSIONS),
                "locale": "en-US",
                "entitlements": [],
                "authorizing_integration_owners": owners,
                "attachment_size_limit": 10_485_760,
                **where,
                **(extra or {}),
            },
        )
        return interaction
