"""The fake Slack's server: the aiohttp app on loopback with the Web API (`/api/{method}`), the
response URLs slash commands and buttons carry, and Socket Mode's WebSocket; it reads each
call's arguments and token off the wire and records the call."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web

from tests.fakes.slack.events import SlackSender
from tests.fakes.slack.rules import MAX_TEXT
from tests.fakes.slack.state import SIGNING_SECRET, Call, Team
from tests.fakes.slack.web_api import WebApi

DEFAULT_CONNECTION_LIMIT = 100  # aiohttp's own default


class FakeSlack(SlackSender, WebApi):
    """`await start()`; point SLACK_API_URL at `api_url`; `bot_url` is where events go.

    For long runs (the benchmark): `check_spec=False` skips the spec checks of arguments,
    `record_calls=False` keeps no `calls` and wakes no `wait_for` per call, and
    `connection_limit` caps the connections open to the bot at once (aiohttp's 100; 0: none).
    `on_call()` is the hook a subclass overrides to see every Web API call and its answer.
    """

    def __init__(
        self,
        *,
        update_limit: tuple[int, float] = (50, 60.0),
        post_limit: tuple[int, float] = (1, 1.0),
        max_text: int = MAX_TEXT,
        signing_secret: str = SIGNING_SECRET,
        check_spec: bool = True,
        record_calls: bool = True,
        connection_limit: int = DEFAULT_CONNECTION_LIMIT,
    ) -> None:
        super().__init__(
            update_limit=update_limit,
            post_limit=post_limit,
            max_text=max_text,
            check_spec=check_spec,
        )
        self.record_calls = record_calls
        self.connection_limit = connection_limit
        self.bot_url = ""
        self.signing_secret = signing_secret
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._sockets: list[web.WebSocketResponse] = []
        self.socket_acks: list[dict[str, Any]] = []
        self.url = ""

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The client session the fake calls the bot with (None before `start()`)."""
        return self._session

    def on_call(self, method: str, args: dict[str, Any], status: int, body: dict[str, Any]) -> None:
        """Called with every Web API call and the status and body it is answered with, before
        the answer goes out; does nothing here."""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{id}", self._response_url)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        connector = aiohttp.TCPConnector(limit=self.connection_limit)
        self._session = aiohttp.ClientSession(connector=connector)

    async def close(self) -> None:
        for ws in self._sockets:
            await ws.close()
        if self._session:
            await self._session.close()
        if self._runner:
            await self._runner.cleanup()

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await arguments(request)
        team = self._team_for(request, method)
        status, body, headers = self._dispatch(method, args, team, request)
        self.on_call(method, args, status, body)
        if self.record_calls:
            error = body.get("error")
            self.calls.append(Call(method, args, team.id if team else None, status, error))
            await self._notify()
        return web.json_response(body, status=status, headers=headers)

    def _team_for(self, request: web.Request, method: str) -> Team | None:
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
        return next((t for t in self.teams.values() if t.token == token), None)

    async def _response_url(self, request: web.Request) -> web.Response:
        body = await request.json()
        body["_id"] = request.match_info["id"]
        self.responses.append(body)
        await self._notify()
        return web.Response(text="ok")

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": 1, "connection_info": {}})
        await self._notify()
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                self.socket_acks.append(json.loads(message.data))
                await self._notify()
        return ws


async def arguments(request: web.Request) -> dict[str, Any]:
    """A Web API call's arguments: the query string and the form or JSON body."""
    args: dict[str, Any] = dict(parse_qsl(request.query_string))
    if request.method == "POST" and request.can_read_body:
        raw = await request.text()
        if request.content_type == "application/json":
            args.update(json.loads(raw) if raw else {})
        else:
            args.update(dict(parse_qsl(raw)))
    return args
