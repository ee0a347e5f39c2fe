"""A loopback fake of the Slack Web API, and a fake of Slack sending events to the bot.

It keeps message state per channel (text, blocks, thread, edit history), enforces the limits the
bot must live with (chat.update per workspace, chat.postMessage per channel: 429 + Retry-After;
msg_too_long; section blocks past 3,000 characters), knows which token belongs to which
workspace, and checks every call against Slack's published specs (tests/specs): the method
exists, its required arguments are present, no unknown argument is sent. Anything wrong is kept
in `violations`, which every test asserts empty. Through `tests.fakes.slack_events` it also signs
Events API, slash-command and interactivity requests the way Slack does and posts them to the
bot, and it serves Socket Mode.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import math
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web

from tests.fakes.slack_events import APP_ID, SlackSender
from tests.fakes.spec_files import SPECS_DIR

SPECS = SPECS_DIR
SIGNING_SECRET = "fake-signing-secret"
CLIENT_ID = "1111.2222"
CLIENT_SECRET = "fake-client-secret"
APP_TOKEN = "xapp-1-A0FAKEAPP-1-fakeapptoken"
MAX_TEXT = 4000  # Slack refuses longer chat.update text with msg_too_long
SECTION_LIMIT = 3000


@dataclass
class User:
    id: str
    is_admin: bool = False
    is_owner: bool = False


@dataclass
class Team:
    id: str
    token: str
    bot_user_id: str
    bot_id: str
    enterprise_id: str | None = None
    users: dict[str, User] = field(default_factory=dict)


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    user: str | None = None
    bot_id: str | None = None
    thread_ts: str | None = None
    blocks: list[dict[str, Any]] | None = None
    history: list[str] = field(default_factory=list)  # every text this message has shown

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": "message", "text": self.text, "ts": self.ts}
        if self.bot_id:
            data["bot_id"] = self.bot_id
        if self.user:
            data["user"] = self.user
        if self.thread_ts:
            data["thread_ts"] = self.thread_ts
        if self.blocks is not None:
            data["blocks"] = self.blocks
        return data

    @property
    def buttons(self) -> dict[str, str]:
        """action_id -> value of the buttons in the message's blocks."""
        found: dict[str, str] = {}
        for block in self.blocks or []:
            for element in block.get("elements", []):
                if element.get("type") == "button":
                    found[element["action_id"]] = element.get("value", "")
        return found


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    team: str | None
    status: int
    error: str | None


class _Window:
    """A sliding-window limit like Slack's: at most `rate` calls in `window` seconds.

    It also notes calls made before a Retry-After it gave had passed: Slack penalises apps
    that ignore it, so the bot must not do that."""

    EARLY_TOLERANCE = 0.05  # seconds: timer granularity, not a grace period
    # Calls already on their way when the 429 went out are not the bot ignoring it; on a busy
    # machine they can arrive this long after it.
    IN_FLIGHT_GRACE = 0.3

    def __init__(self, rate: int, window: float) -> None:
        self.rate, self.window = rate, window
        self.times: dict[str, deque[float]] = defaultdict(deque)
        self.blocked: dict[str, tuple[float, float]] = {}  # key -> (429 given at, until)
        self.early: list[str] = []

    def retry_after(self, key: str) -> float | None:
        now = time.monotonic()
        given, until = self.blocked.get(key, (0.0, 0.0))
        if given + self.IN_FLIGHT_GRACE < now < until - self.EARLY_TOLERANCE:
            self.early.append(key)
        seen = self.times[key]
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        if len(seen) >= self.rate:
            # Tenths of a second keep tests fast; Slack itself sends whole seconds.
            wait = max(0.1, math.ceil((seen[0] + self.window - now) * 10) / 10)
            if now >= until:  # a new block; 429s during one keep its start
                self.blocked[key] = (now, now + wait)
            return wait
        seen.append(now)
        return None


def _load_spec() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Known and required arguments per method, from the Swagger file and slack-methods/."""
    known: dict[str, set[str]] = defaultdict(set)
    required: dict[str, set[str]] = defaultdict(set)
    swagger = json.loads((SPECS / "slack-web-openapi-v2.json").read_text())
    for path, verbs in swagger["paths"].items():
        for operation in verbs.values():
            for param in operation.get("parameters", []):
                if param["name"] == "token":
                    continue  # the SDK sends it as Authorization: Bearer
                known[path.lstrip("/")].add(param["name"])
                if param.get("required"):
                    required[path.lstrip("/")].add(param["name"])
    for file in (SPECS / "slack-methods").glob("*.json"):
        doc = json.loads(file.read_text())
        method = file.stem
        for name, arg in (doc.get("args") or {}).items():
            if name == "token":
                continue
            known[method].add(name)
            if arg.get("required"):
                required[method].add(name)
        known.setdefault(method, set())
    return dict(known), dict(required)


class FakeSlack(SlackSender):
    """`await start()`; point SLACK_API_URL at `api_url`; `bot_url` is where events go."""

    def __init__(
        self,
        *,
        update_limit: tuple[int, float] = (50, 60.0),
        post_limit: tuple[int, float] = (1, 1.0),
        max_text: int = MAX_TEXT,
        signing_secret: str = SIGNING_SECRET,
    ) -> None:
        self.teams: dict[str, Team] = {}
        self.messages: dict[tuple[str, str], Message] = {}  # (channel, ts)
        self.channels: dict[str, str] = {}  # channel -> team
        self.channel_types: dict[str, str] = {}  # channel -> channel, im, ...
        self.calls: list[Call] = []
        self.responses: list[dict[str, Any]] = []  # bodies posted to response_url
        self.violations: list[str] = []
        self.codes: dict[str, str] = {}  # OAuth code -> team id
        self.bot_url = ""
        self.max_text = max_text
        self.signing_secret = signing_secret
        self._updates = _Window(*update_limit)
        self._posts = _Window(*post_limit)
        self._known, self._required = _load_spec()
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._sockets: list[web.WebSocketResponse] = []
        self.socket_acks: list[dict[str, Any]] = []
        self.url = ""

    # -- set-up ---------------------------------------------------------------------------------

    def add_team(
        self, team_id: str, *, enterprise_id: str | None = None, admins: tuple[str, ...] = ()
    ) -> Team:
        team = Team(
            id=team_id,
            token=f"xoxb-{team_id}-fake-bot-token",
            bot_user_id=f"UBOT{team_id}",
            bot_id=f"B{team_id}",
            enterprise_id=enterprise_id,
        )
        for user in admins:
            team.users[user] = User(user, is_admin=True)
        self.teams[team_id] = team
        return team

    def add_user(self, team_id: str, user: str, *, admin: bool = False) -> None:
        self.teams[team_id].users[user] = User(user, is_admin=admin)

    def install_code(self, team_id: str) -> str:
        """An OAuth code that oauth.v2.access exchanges for `team_id`'s bot token."""
        code = f"code-{team_id}-{next(self._ids)}"
        self.codes[code] = team_id
        return code

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

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
        self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        for ws in self._sockets:
            await ws.close()
        if self._session:
            await self._session.close()
        if self._runner:
            await self._runner.cleanup()

    # -- what the bot did -------------------------------------------------------------------------

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        """The bot's and people's messages in a thread, parent first, in order."""
        found = [
            m
            for (c, _), m in self.messages.items()
            if c == channel and (m.ts == thread_ts or m.thread_ts == thread_ts)
        ]
        return sorted(found, key=lambda m: float(m.ts))

    def bot_messages(self, channel: str, thread_ts: str) -> list[Message]:
        return [m for m in self.thread(channel, thread_ts) if m.bot_id]

    @property
    def early_calls(self) -> list[str]:
        """Limited calls made before the Retry-After the fake had given for them ran out."""
        return self._updates.early + self._posts.early

    def count(self, method: str, *, status: int | None = None) -> int:
        return sum(
            1 for c in self.calls if c.method == method and (status is None or c.status == status)
        )

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 20.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(condition), timeout)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- the Web API ------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await _arguments(request)
        team = self._team_for(request, method)
        status, body, headers = self._dispatch(method, args, team, request)
        self.calls.append(Call(method, args, team.id if team else None, status, body.get("error")))
        await self._notify()
        return web.json_response(body, status=status, headers=headers)

    def _team_for(self, request: web.Request, method: str) -> Team | None:
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
        return next((t for t in self.teams.values() if t.token == token), None)

    def _check(self, method: str, args: dict[str, Any], team: Team | None) -> None:
        if method not in self._known:
            self.violations.append(f"{method}: not a Slack Web API method")
            return
        for name in sorted(self._required.get(method, set()) - set(args)):
            self.violations.append(f"{method}: required argument {name} missing")
        # slack_sdk adds the workspace's team_id to every call of a client made for one
        # workspace (Slack accepts it everywhere, and org-wide tokens need it): it must match.
        for name in sorted(set(args) - self._known[method] - {"team_id"}):
            self.violations.append(f"{method}: unknown argument {name}")
        if "team_id" in args and team is not None and args["team_id"] != team.id:
            self.violations.append(f"{method}: team_id {args['team_id']} with {team.id}'s token")

    def _dispatch(
        self, method: str, args: dict[str, Any], team: Team | None, request: web.Request
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        self._check(method, args, team)
        if method not in self._known:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        if method == "oauth.v2.access":
            return self._oauth(args, request)
        if method == "apps.connections.open":
            if request.headers.get("Authorization") != f"Bearer {APP_TOKEN}":
                return 200, {"ok": False, "error": "invalid_auth"}, {}
            return 200, {"ok": True, "url": f"ws://{request.host}/socket"}, {}
        if team is None:
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        if method == "auth.test":
            return 200, self._auth_test(team), {}
        if method == "users.info":
            user = team.users.get(str(args.get("user")))
            if user is None:
                return 200, {"ok": False, "error": "user_not_found"}, {}
            return 200, {"ok": True, "user": _user_json(user, team)}, {}
        if method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
            channel = str(args.get("channel"))
            if self.channels.get(channel) != team.id:
                return 200, {"ok": False, "error": "channel_not_found"}, {}
            limiter, key = (
                (self._updates, team.id) if method == "chat.update" else (self._posts, channel)
            )
            if method != "chat.postEphemeral" and (wait := limiter.retry_after(key)) is not None:
                return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(wait)}
            if (error := self._check_content(args)) is not None:
                return 200, {"ok": False, "error": error}, {}
            if method == "chat.postMessage":
                return 200, self._post(team, channel, args), {}
            if method == "chat.update":
                return self._update(team, channel, args)
            return 200, {"ok": True, "message_ts": f"{time.time():.6f}"}, {}
        self.violations.append(f"{method}: the fake does not serve it")
        return 200, {"ok": False, "error": "unknown_method"}, {}

    def _check_content(self, args: dict[str, Any]) -> str | None:
        text = str(args.get("text") or "")
        blocks = _blocks(args.get("blocks"))
        if not text and not blocks:
            return "no_text"
        if len(text) > self.max_text:
            return "msg_too_long"
        for block in blocks or []:
            section = (block.get("text") or {}).get("text")
            if block.get("type") == "section" and not (0 < len(section or "") <= SECTION_LIMIT):
                return "invalid_blocks"
        return None

    def _post(self, team: Team, channel: str, args: dict[str, Any]) -> dict[str, Any]:
        thread_ts = args.get("thread_ts")
        if thread_ts and (channel, thread_ts) not in self.messages:
            self.violations.append(f"chat.postMessage: thread_ts {thread_ts} not in {channel}")
        message = Message(
            channel=channel,
            ts=self._next_ts(),
            text=str(args.get("text") or ""),
            bot_id=team.bot_id,
            user=team.bot_user_id,
            thread_ts=thread_ts,
            blocks=_blocks(args.get("blocks")),
        )
        message.history.append(message.text)
        self.messages[(channel, message.ts)] = message
        return {"ok": True, "channel": channel, "ts": message.ts, "message": message.to_json()}

    def _update(
        self, team: Team, channel: str, args: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        message = self.messages.get((channel, str(args.get("ts"))))
        if message is None:
            return 200, {"ok": False, "error": "message_not_found"}, {}
        if message.bot_id != team.bot_id:
            return 200, {"ok": False, "error": "cant_update_message"}, {}
        message.text = str(args.get("text") or "")
        if "blocks" in args:
            message.blocks = _blocks(args["blocks"])
        message.history.append(message.text)
        return 200, {"ok": True, "channel": channel, "ts": message.ts, "text": message.text}, {}

    def _auth_test(self, team: Team) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"https://{team.id.lower()}.slack.com/",
            "team": f"Team {team.id}",
            "user": "answerbot",
            "team_id": team.id,
            "user_id": team.bot_user_id,
            "bot_id": team.bot_id,
            "enterprise_id": team.enterprise_id,
            "is_enterprise_install": False,
        }

    def _oauth(
        self, args: dict[str, Any], request: web.Request
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        given = request.headers.get("Authorization", "")
        if given != f"Basic {expected}" and not (
            args.get("client_id") == CLIENT_ID and args.get("client_secret") == CLIENT_SECRET
        ):
            return 200, {"ok": False, "error": "invalid_client_id"}, {}
        team_id = self.codes.pop(str(args.get("code")), None)
        if team_id is None:
            return 200, {"ok": False, "error": "invalid_code"}, {}
        team = self.teams[team_id]
        enterprise = {"id": team.enterprise_id, "name": "Org"} if team.enterprise_id else None
        return (
            200,
            {
                "ok": True,
                "app_id": APP_ID,
                "authed_user": {"id": "UINSTALLER"},
                "scope": "app_mentions:read,chat:write,commands",
                "token_type": "bot",
                "access_token": team.token,
                "bot_user_id": team.bot_user_id,
                "team": {"id": team.id, "name": f"Team {team.id}"},
                "enterprise": enterprise,
                "is_enterprise_install": False,
            },
            {},
        )

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

    # -- people ----------------------------------------------------------------------------------

    def user_says(
        self,
        team_id: str,
        channel: str,
        user: str,
        text: str,
        *,
        thread_ts: str | None = None,
        channel_type: str = "channel",
    ) -> Message:
        """Record a person's message in the channel (as Slack would) and return it."""
        self.channels.setdefault(channel, team_id)
        message = Message(channel=channel, ts=self._next_ts(), text=text, user=user)
        message.thread_ts = thread_ts
        message.history.append(text)
        self.messages[(channel, message.ts)] = message
        self.channel_types[channel] = channel_type
        return message

    def _next_ts(self) -> str:
        return f"{1_700_000_000 + next(self._ts)}.000100"


async def _arguments(request: web.Request) -> dict[str, Any]:
    args: dict[str, Any] = dict(parse_qsl(request.query_string))
    if request.method == "POST" and request.can_read_body:
        raw = await request.text()
        if request.content_type == "application/json":
            args.update(json.loads(raw) if raw else {})
        else:
            args.update(dict(parse_qsl(raw)))
    return args


def _blocks(value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    blocks = json.loads(value) if isinstance(value, str) else value
    return list(blocks)


def _user_json(user: User, team: Team) -> dict[str, Any]:
    return {
        "id": user.id,
        "team_id": team.id,
        "name": user.id.lower(),
        "deleted": False,
        "is_admin": user.is_admin,
        "is_owner": user.is_owner,
        "is_primary_owner": False,
        "is_bot": False,
    }
