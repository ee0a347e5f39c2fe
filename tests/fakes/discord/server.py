"""The fake Discord's server: one aiohttp app on loopback with the gateway socket and the REST
API under /api/v10, where every request is checked against Discord's published spec, recorded
and routed to what discord.py calls."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.fakes.discord import payloads
from tests.fakes.discord.gateway import MESSAGE_CONTENT_INTENT
from tests.fakes.discord.rules import json_response, unknown
from tests.fakes.discord.spec import SpecChecker
from tests.fakes.discord.state import FAKE_TOKEN, RestCall
from tests.fakes.discord.writes import Writes

API_PREFIX = "/api/v10"
SESSION_STARTS_PER_DAY = 1000  # IDENTIFYs a bot may send per day
DAY_MS = 86_400_000


class FakeDiscord(Writes):
    """Start with `await fake.start()`; point the bot at `api_url` and `gateway_url`.

    For the benchmark: `check_spec=False` skips the spec checks (and loading the spec), an
    `application_id` replaces the generated one (the bot's user id is the same), and a subclass
    may add routes in `app()` and override three hooks: `admit()` to refuse a request before the
    fake looks at it, `on_routed()` to see each REST call with its response, `on_spend()` (in
    writes.py) to see each write charged to a channel's budget.
    """

    def __init__(
        self,
        *,
        token: str = FAKE_TOKEN,
        budget_rate: int = 5,
        budget_window: float = 5.0,
        advertise_budget: bool = True,
        clock: Callable[[], float] = time.monotonic,
        check_spec: bool = True,
        application_id: str | None = None,
    ) -> None:
        super().__init__(
            token=token,
            budget_rate=budget_rate,
            budget_window=budget_window,
            advertise_budget=advertise_budget,
            clock=clock,
            application_id=application_id,
        )
        self.check_spec = check_spec
        # What GET /gateway/bot tells: the shards Discord recommends, and how many sessions may
        # start at once (every 5 s).
        self.recommended_shards = 1
        self.max_concurrency = 1
        self._spec = SpecChecker() if check_spec else None
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        """The gateway and the REST API in one aiohttp app; a subclass may add routes."""
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest)
        return app

    async def start(self, port: int = 0) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = _bound_port(site)

    async def listen_also(self) -> int:
        """Serve on one more loopback port too, and return it: a second bot process pointed at
        it can be told apart in `calls` by its `port`."""
        assert self._runner is not None, "start() first"
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return _bound_port(site)

    def api_url_at(self, port: int) -> str:
        return f"http://127.0.0.1:{port}{API_PREFIX}"

    async def close(self) -> None:
        await self.close_sockets()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    @property
    def tolerated(self) -> list[str]:
        """Known discord.py extras the spec leaves out (see spec.py)."""
        return self._spec.tolerated if self._spec is not None else []

    # -- hooks ----------------------------------------------------------------------------------

    def admit(self, method: str, parts: list[str]) -> web.Response | None:
        """Called first with every REST request (`parts`: its path under /api/v10, split at /):
        a response returned is sent instead, unchecked and unrecorded. None here: all pass."""
        return None

    def on_routed(self, call: RestCall, response: web.Response) -> None:
        """Called with every REST call the fake routed and its response, before `changed`
        wakes the waiters. Does nothing here."""

    # -- REST -----------------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        parts = path.strip("/").split("/")
        if (refused := self.admit(request.method, parts)) is not None:
            return refused
        body = await request.read()
        query = dict(request.query)
        spec = self._spec
        if spec is not None and (
            problem := spec.check(request.method, API_PREFIX + path, query, body)
        ):
            self.violations.append(problem)
        payload = json.loads(body) if body else None
        if body and request.content_type != "application/json":
            self.violations.append(f"{request.method} {path}: body is {request.content_type}")
        self.requests.append((request.method, path, payload))
        by_token = parts[0] in ("webhooks", "interactions")
        if not by_token and request.headers.get("Authorization") != f"Bot {self.token}":
            return json_response({"message": "401: Unauthorized", "code": 0}, status=401)
        port = request.transport.get_extra_info("sockname")[1] if request.transport else 0
        call = RestCall(request.method, parts, query, payload, port)
        self.calls.append(call)
        async with self.changed:
            response = self._route(call)
            # What discord.py reads to plan shards: shaped as the spec says (the fake's other
            # answers carry only what discord.py reads, so they are not checked).
            if (
                spec is not None
                and (call.method, call.parts) == ("GET", ["gateway", "bot"])
                and (problem := spec.check_response("GET", API_PREFIX + path, response))
            ):
                self.violations.append(problem)
            self.on_routed(call, response)
            self.changed.notify_all()
        return response

    def _route(self, call: RestCall) -> web.Response:
        method, parts, query, body = call.method, call.parts, call.query, call.body
        match (method, parts):
            case ("GET", ["gateway", "bot"]):
                return json_response(
                    {
                        "url": self.gateway_url,
                        "shards": self.recommended_shards,
                        "session_start_limit": {
                            "total": SESSION_STARTS_PER_DAY,
                            "remaining": max(SESSION_STARTS_PER_DAY - self.identifies, 0),
                            "reset_after": DAY_MS,
                            "max_concurrency": self.max_concurrency,
                        },
                    }
                )
            case ("GET", ["users", "@me"]):
                return json_response(self.users[self.bot_id])
            case ("GET", ["oauth2", "applications", "@me"]):
                bot = self.users[self.bot_id]
                return json_response(payloads.application(self.application_id, bot))
            case ("PUT", ["applications", _, "commands"]):
                return self._put_commands("global", body)
            case ("PUT", ["applications", _, "guilds", guild_id, "commands"]):
                return self._put_commands(guild_id, body)
            case ("GET", ["applications", _, "commands"]):
                return json_response(self.commands.get("global", []))
            case ("GET", ["applications", _, "guilds", guild_id, "commands"]):
                return json_response(self.commands.get(guild_id, []))
            case ("POST", ["interactions", interaction_id, token, "callback"]):
                return self._callback(interaction_id, token, query, body)
            case ("PATCH", ["webhooks", _, token, "messages", "@original"]):
                interaction = self.interaction_for_token(token)
                if interaction is None or interaction.original_id is None:
                    return unknown("Unknown Message", 10008)
                if (expired := self._expired(call, interaction)) is not None:
                    return expired
                return self._edit(call, interaction.original_id)
            case ("PATCH", ["webhooks", _, token, "messages", message_id]):
                interaction = self.interaction_for_token(token)
                if interaction is None or message_id not in interaction.followup_ids:
                    return unknown("Unknown Message", 10008)
                if (expired := self._expired(call, interaction)) is not None:
                    return expired
                return self._edit(call, message_id)
            case ("POST", ["webhooks", _, token]):
                interaction = self.interaction_for_token(token)
                if interaction is None:
                    return unknown("Unknown Webhook", 10015)
                if (expired := self._expired(call, interaction)) is not None:
                    return expired
                response = self._create(call, interaction.channel_id, webhook=True)
                if response.status == 200:
                    assert isinstance(response.body, bytes)
                    interaction.followup_ids.append(json.loads(response.body)["id"])
                return response
            case ("POST", ["channels", channel_id, "messages"]):
                return self._create(call, channel_id)
            case ("GET", ["channels", channel_id, "messages", message_id]):
                message = self.messages.get(message_id)
                if message is None or message["channel_id"] != channel_id:
                    return unknown("Unknown Message", 10008)
                return json_response(self._as_read(message))
            case ("PATCH", ["channels", channel_id, "messages", message_id]):
                message = self.messages.get(message_id)
                if message is None or message["channel_id"] != channel_id:
                    return unknown("Unknown Message", 10008)
                return self._edit(call, message_id)
            case ("POST", ["channels", channel_id, "messages", message_id, "threads"]):
                return self._thread(channel_id, message_id, body)
            case ("POST", ["channels", channel_id, "threads"]):
                return self._thread(channel_id, None, body)
        self.violations.append(f"{method} /{'/'.join(parts)}: not implemented by the fake")
        return unknown("404: Not Found", 0)

    def _as_read(self, message: dict[str, Any]) -> dict[str, Any]:
        """A message as the bot may read it: without its content unless the bot wrote it, it
        mentions the bot, or the bot has the message content intent (REST withholds it too)."""
        readable = (
            self._intents & MESSAGE_CONTENT_INTENT
            or message["author"]["id"] == self.bot_id
            or any(user["id"] == self.bot_id for user in message.get("mentions", []))
        )
        return message if readable else {**message, "content": ""}


def _bound_port(site: web.TCPSite) -> int:
    server = site._server
    assert server is not None
    return int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
