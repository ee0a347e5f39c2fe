"""A loopback Discord that the real discord.py talks to: REST API and gateway, with state.

It keeps the messages the bot posts and edits, answers interactions, enforces Discord's
per-channel create/edit budget with 429s shaped like Discord's, speaks the gateway handshake
(HELLO, IDENTIFY, READY, GUILD_CREATE) and lets tests dispatch INTERACTION_CREATE and
MESSAGE_CREATE. Every REST request is checked against Discord's published OpenAPI spec
(`tests/specs/discord-openapi.json`, a copy of ../shared/specs); tests assert `violations`
stays empty.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes import discord_payloads as payloads
from tests.fakes.discord_payloads import MEMBER_PERMISSIONS, TIMESTAMP
from tests.fakes.discord_spec import SpecChecker

API_PREFIX = "/api/v10"
FAKE_TOKEN = "fake-bot-token"
HEARTBEAT_INTERVAL_MS = 41_250
EPHEMERAL = 1 << 6
MANAGE_GUILD = 1 << 5
DEFAULT_ARCHIVE_MINUTES = 1440
MESSAGE_CONTENT_INTENT = 1 << 15
ACK_DEADLINE_SECONDS = 3.0  # an interaction not answered by then is gone

_ids = itertools.count(1_300_000_000_000_000_000)


def snowflake() -> str:
    return str(next(_ids))


@dataclass
class Guild:
    id: str
    name: str
    channel_ids: list[str]
    members: dict[str, int]  # user id -> permission bits


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


class FakeDiscord:
    """Start with `await fake.start()`; point the bot at `api_url` and `gateway_url`."""

    def __init__(
        self,
        *,
        token: str = FAKE_TOKEN,
        budget_rate: int = 5,
        budget_window: float = 5.0,
        advertise_budget: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token = token
        self.application_id = snowflake()
        self.bot_id = self.application_id
        self.budget_rate = budget_rate
        self.budget_window = budget_window
        # False models a limit discord.py can't see coming (Discord's shared per-channel cap):
        # no X-RateLimit headers on successes, so only 429s tell.
        self.advertise_budget = advertise_budget
        self._clock = clock
        self.guilds: dict[str, Guild] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self.interactions: dict[str, Interaction] = {}
        self.commands: dict[str, list[dict[str, Any]]] = {}
        self.command_syncs: list[str] = []
        self.refuse_commands: set[str] = set()  # scopes answering 403 (app not authorised)
        self.requests: list[tuple[str, str, Any]] = []
        self.violations: list[str] = []
        self.rate_limited = 0
        self.identifies = 0
        self.resumes = 0
        self.identify_payloads: list[dict[str, Any]] = []
        self.ready = asyncio.Event()
        self.changed = asyncio.Condition()
        self._writes: dict[str, deque[float]] = {}
        self._ws: web.WebSocketResponse | None = None
        self._seq = 0
        self._spec = SpecChecker()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.users[self.bot_id] = payloads.user(self.bot_id, "answerbot", bot=True)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def drop_connection(self, code: int = 4000) -> None:
        """Close the gateway socket like Discord does on its side (4000: unknown error)."""
        assert self._ws is not None
        await self._ws.close(code=code)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def _intents(self) -> int:
        return int(self.identify_payloads[-1]["intents"]) if self.identify_payloads else 0

    @property
    def tolerated(self) -> list[str]:
        """Known discord.py extras the spec leaves out (see tests/discord_spec.py)."""
        return self._spec.tolerated

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # -- world building -----------------------------------------------------------------------

    def add_user(self, name: str) -> str:
        user_id = snowflake()
        self.users[user_id] = payloads.user(user_id, name)
        return user_id

    def add_guild(self, name: str, members: dict[str, int]) -> tuple[str, str]:
        """A guild with one text channel; returns (guild id, channel id)."""
        guild_id, channel_id = snowflake(), snowflake()
        self.guilds[guild_id] = Guild(guild_id, name, [channel_id], dict(members))
        self.channels[channel_id] = payloads.text_channel(channel_id, guild_id)
        return guild_id, channel_id

    # -- driving the bot ----------------------------------------------------------------------

    async def slash(
        self, guild_id: str, channel_id: str, user_id: str, name: str, **options: str
    ) -> Interaction:
        command = next(c for c in self._visible_commands(guild_id) if c["name"] == name)
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

    # -- gateway ------------------------------------------------------------------------------

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
            created_at=self._clock(),
        )
        self.interactions[interaction.id] = interaction
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

    def _visible_commands(self, guild_id: str) -> list[dict[str, Any]]:
        return self.commands.get(guild_id, []) + self.commands.get("global", [])

    # -- REST ---------------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.Response:
        body = await request.read()
        path = "/" + request.match_info["tail"]
        query = dict(request.query)
        problem = self._spec.check(
            request.method,
            API_PREFIX + path,
            query,
            body,
        )
        if problem:
            self.violations.append(problem)
        payload = json.loads(body) if body else None
        if body and request.content_type != "application/json":
            self.violations.append(f"{request.method} {path}: body is {request.content_type}")
        self.requests.append((request.method, path, payload))
        parts = path.strip("/").split("/")
        by_token = parts[0] in ("webhooks", "interactions")
        if not by_token and request.headers.get("Authorization") != f"Bot {self.token}":
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        async with self.changed:
            response = self._route(request.method, parts, query, payload)
            self.changed.notify_all()
        return response

    def _route(
        self, method: str, parts: list[str], query: dict[str, str], body: Any
    ) -> web.Response:
        match (method, parts):
            case ("GET", ["gateway", "bot"]):
                return _json(
                    {
                        "url": self.gateway_url,
                        "shards": 1,
                        "session_start_limit": {
                            "total": 1000,
                            "remaining": 1000 - self.identifies,
                            "reset_after": 86_400_000,
                            "max_concurrency": 1,
                        },
                    }
                )
            case ("GET", ["users", "@me"]):
                return _json(self.users[self.bot_id])
            case ("GET", ["oauth2", "applications", "@me"]):
                return _json(payloads.application(self.application_id, self.users[self.bot_id]))
            case ("PUT", ["applications", _, "commands"]):
                return self._put_commands("global", body)
            case ("PUT", ["applications", _, "guilds", guild_id, "commands"]):
                return self._put_commands(guild_id, body)
            case ("GET", ["applications", _, "commands"]):
                return _json(self.commands.get("global", []))
            case ("GET", ["applications", _, "guilds", guild_id, "commands"]):
                return _json(self.commands.get(guild_id, []))
            case ("POST", ["interactions", interaction_id, token, "callback"]):
                return self._callback(interaction_id, token, query, body)
            case ("PATCH", ["webhooks", _, token, "messages", "@original"]):
                interaction = self._by_token(token)
                if interaction is None or interaction.original_id is None:
                    return _unknown("Unknown Message", 10008)
                return self._edit(interaction.original_id, body)
            case ("PATCH", ["webhooks", _, token, "messages", message_id]):
                interaction = self._by_token(token)
                if interaction is None or message_id not in interaction.followup_ids:
                    return _unknown("Unknown Message", 10008)
                return self._edit(message_id, body)
            case ("POST", ["webhooks", _, token]):
                interaction = self._by_token(token)
                if interaction is None:
                    return _unknown("Unknown Webhook", 10015)
                response = self._create(interaction.channel_id, body, webhook=True)
                if response.status == 200:
                    assert isinstance(response.body, bytes)
                    interaction.followup_ids.append(json.loads(response.body)["id"])
                return response
            case ("POST", ["channels", channel_id, "messages"]):
                return self._create(channel_id, body)
            case ("PATCH", ["channels", channel_id, "messages", message_id]):
                message = self.messages.get(message_id)
                if message is None or message["channel_id"] != channel_id:
                    return _unknown("Unknown Message", 10008)
                return self._edit(message_id, body)
            case ("POST", ["channels", channel_id, "messages", message_id, "threads"]):
                return self._thread(channel_id, message_id, body)
        self.violations.append(f"{method} /{'/'.join(parts)}: not implemented by the fake")
        return _unknown("404: Not Found", 0)

    def _put_commands(self, scope: str, body: list[dict[str, Any]]) -> web.Response:
        if scope in self.refuse_commands:
            return _json({"message": "Missing Access", "code": 50001}, status=403)
        self.command_syncs.append(scope)
        stored = []
        for command in body:
            item = {
                "id": snowflake(),
                "application_id": self.application_id,
                "version": snowflake(),
                "type": 1,
                "default_member_permissions": None,
                "nsfw": False,
                **command,
            }
            if scope != "global":
                item["guild_id"] = scope
            stored.append(item)
        self.commands[scope] = stored
        return _json(stored)

    def _by_token(self, token: str) -> Interaction | None:
        return next((i for i in self.interactions.values() if i.token == token), None)

    def _callback(
        self, interaction_id: str, token: str, query: dict[str, str], body: dict[str, Any]
    ) -> web.Response:
        interaction = self.interactions.get(interaction_id)
        if interaction is None or interaction.token != token:
            return _unknown("Unknown interaction", 10062)
        if self._clock() - interaction.created_at > ACK_DEADLINE_SECONDS:
            self.violations.append(f"interaction {interaction_id} acknowledged after 3 seconds")
            return _unknown("Unknown interaction", 10062)  # what Discord answers then
        if interaction.callbacks:
            return _json(
                {"message": "Interaction has already been acknowledged.", "code": 40060}, status=400
            )
        interaction.callbacks.append(body)
        kind, data = body["type"], body.get("data") or {}
        message: dict[str, Any] | None = None
        if kind in (4, 5):
            if not self._mentions_off(f"callback {kind}", data, needs_content=kind == 4):
                return _invalid()
            if len(data.get("content") or "") > 2000:
                return self._too_long("interaction callback")
            message = self._new_message(
                interaction.channel_id, self.users[self.bot_id], data.get("content", "")
            )
            message["flags"] = int(data.get("flags") or 0)
            message["loading"] = kind == 5
            message["components"] = data.get("components", [])
            message["webhook_id"] = self.application_id
            self.messages[message["id"]] = message
            interaction.original_id = message["id"]
        elif kind != 9:
            return _json({"message": f"callback type {kind} unsupported", "code": 0}, status=400)
        if query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        result: dict[str, Any] = {
            "interaction": {
                "id": interaction.id,
                "type": interaction.type,
                "response_message_id": message["id"] if message else None,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(message and message["flags"] & EPHEMERAL),
            },
            "resource": {"type": kind},
        }
        if message is not None:
            result["resource"]["message"] = message
        return _json(result)

    def _create(
        self, channel_id: str, body: dict[str, Any], *, webhook: bool = False
    ) -> web.Response:
        if channel_id not in self.channels:
            return _unknown("Unknown Channel", 10003)
        if not self._mentions_off("create", body, needs_content=True):
            return _invalid()
        content = body.get("content") or ""
        if len(content) > 2000:
            return self._too_long("create")
        ephemeral = bool(int(body.get("flags") or 0) & EPHEMERAL)
        if not ephemeral and (limited := self._spend(channel_id)) is not None:
            return limited
        message = self._new_message(channel_id, self.users[self.bot_id], content)
        message["components"] = body.get("components", [])
        message["flags"] = int(body.get("flags") or 0)
        if webhook:
            message["webhook_id"] = self.application_id
        if "message_reference" in body:
            message["type"] = 19
            message["message_reference"] = {**body["message_reference"], "type": 0}
        self.messages[message["id"]] = message
        return self._with_budget_headers(_json(message), channel_id)

    def _edit(self, message_id: str, body: dict[str, Any]) -> web.Response:
        message = self.messages[message_id]
        if not self._mentions_off("edit", body, needs_content="content" in body):
            return _invalid()
        if len(body.get("content") or "") > 2000:
            return self._too_long("edit")
        channel_id = message["channel_id"]
        if not message["flags"] & EPHEMERAL and (limited := self._spend(channel_id)) is not None:
            return limited
        if "content" in body:
            message["content"] = body["content"] or ""
        if "components" in body:
            message["components"] = body["components"] or []
        message["loading"] = False
        message["edits"] = message.get("edits", 0) + 1
        message["edited_timestamp"] = TIMESTAMP
        return self._with_budget_headers(_json(message), channel_id)

    def _thread(self, channel_id: str, message_id: str, body: dict[str, Any]) -> web.Response:
        parent = self.channels[channel_id]
        # Discord gives a thread started from a message that message's id.
        archive_minutes = body.get("auto_archive_duration", DEFAULT_ARCHIVE_MINUTES)
        thread = payloads.thread(message_id, parent, self.bot_id, body["name"], archive_minutes)
        self.channels[message_id] = thread
        asyncio.get_running_loop().create_task(
            self._dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        )
        return _json(thread, status=201)

    # -- Discord's rules ------------------------------------------------------------------------

    def _mentions_off(self, what: str, body: dict[str, Any], *, needs_content: bool) -> bool:
        mentions = body.get("allowed_mentions")
        if not needs_content and mentions is None:
            return True
        if (
            mentions is None
            or mentions.get("parse")
            or mentions.get("users")
            or mentions.get("roles")
            or mentions.get("replied_user")
        ):
            self.violations.append(f"{what}: allowed_mentions not none: {mentions!r}")
            return False
        return True

    def _too_long(self, what: str) -> web.Response:
        self.violations.append(f"{what}: content over 2000 characters")
        return _invalid()

    def _spend(self, channel_id: str) -> web.Response | None:
        """Discord's per-channel create/edit budget: None if allowed, else the 429 response."""
        now = self._clock()
        window = self._writes.setdefault(channel_id, deque())
        while window and window[0] <= now - self.budget_window:
            window.popleft()
        if len(window) >= self.budget_rate:
            self.rate_limited += 1
            retry_after = round(window[0] + self.budget_window - now, 3)
            response = _json(
                {
                    "message": "You are being rate limited.",
                    "retry_after": retry_after,
                    "global": False,
                },
                status=429,
            )
            response.headers.update(
                {
                    "Retry-After": str(max(1, round(retry_after + 0.5))),
                    "X-RateLimit-Limit": str(self.budget_rate),
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
                    "X-RateLimit-Reset-After": f"{retry_after:.3f}",
                    "X-RateLimit-Bucket": f"messages-{channel_id}",
                    "X-RateLimit-Scope": "user",
                    "Via": "1.1 google",
                }
            )
            return response
        window.append(now)
        return None

    def _with_budget_headers(self, response: web.Response, channel_id: str) -> web.Response:
        if not self.advertise_budget:
            return response
        window = self._writes.get(channel_id) or deque([self._clock()])
        reset_after = max(window[0] + self.budget_window - self._clock(), 0.0)
        response.headers.update(
            {
                "X-RateLimit-Limit": str(self.budget_rate),
                "X-RateLimit-Remaining": str(max(self.budget_rate - len(window), 0)),
                "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
                "X-RateLimit-Reset-After": f"{reset_after:.3f}",
                "X-RateLimit-Bucket": f"messages-{channel_id}",
            }
        )
        return response

    def _new_message(self, channel_id: str, author: dict[str, Any], content: str) -> dict[str, Any]:
        guild_id = self.channels[channel_id].get("guild_id")
        return payloads.message(snowflake(), channel_id, guild_id, author, content)


def _json(data: Any, *, status: int = 200) -> web.Response:
    # discord.py only parses bodies whose Content-Type is exactly application/json.
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"}
    )


def _unknown(message: str, code: int) -> web.Response:
    return _json({"message": message, "code": code}, status=404)


def _invalid() -> web.Response:
    return _json({"message": "Invalid Form Body", "code": 50035}, status=400)
