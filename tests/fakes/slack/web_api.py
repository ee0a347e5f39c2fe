"""The Web API methods the fake Slack serves (auth.test, users.info, chat.postMessage,
chat.update, chat.postEphemeral, views.open, oauth.v2.access, apps.connections.open,
assistant.threads.* through assistant.py, and chat.*Stream through streams.py) from its state,
under Slack's rules: each call becomes (HTTP status, JSON body, headers)."""

from __future__ import annotations

import base64
import time
from typing import Any

from aiohttp import web

from tests.fakes.slack.assistant import AssistantApi, add_assistant_specs
from tests.fakes.slack.markdown import markdown_error, show, uses_markdown_text
from tests.fakes.slack.rules import MAX_TEXT, Window, content_error, load_spec, spec_problems
from tests.fakes.slack.state import (
    APP_ID,
    APP_TOKEN,
    CLIENT_ID,
    CLIENT_SECRET,
    Message,
    Team,
    User,
)
from tests.fakes.slack.streams import STREAM_METHODS, StreamsApi

Answer = tuple[int, dict[str, Any], dict[str, str]]  # HTTP status, JSON body, headers


class WebApi(StreamsApi, AssistantApi):
    """Slack's Web API over the state; `update_limit` and `post_limit` are (calls, seconds).

    `check_spec=False` skips checking each call's arguments against the spec (the methods known
    still come from it); `outage(method, seconds)` makes a method fail on Slack's side for a
    while."""

    def __init__(
        self,
        *,
        update_limit: tuple[int, float] = (50, 60.0),
        post_limit: tuple[int, float] = (1, 1.0),
        max_text: int = MAX_TEXT,
        check_spec: bool = True,
    ) -> None:
        super().__init__()
        self.max_text = max_text
        self.check_spec = check_spec
        self._updates = Window(*update_limit)
        self._posts = Window(*post_limit)
        self._known, self._required = load_spec()
        add_assistant_specs(self._known, self._required)
        self._outages: dict[str, tuple[float, int]] = {}  # method -> (until, HTTP status)

    def outage(self, method: str, seconds: float, *, status: int = 500) -> None:
        """From now on, for `seconds`, `method` answers HTTP `status` with Slack's
        `internal_error` and does nothing (not counted against its rate limit either)."""
        self._outages[method] = (time.monotonic() + seconds, status)

    @property
    def early_calls(self) -> list[str]:
        """Limited calls made before the Retry-After the fake had given for them ran out."""
        return self._updates.early + self._posts.early + self.stream_early_calls

    def _check(self, method: str, args: dict[str, Any], team: Team | None) -> None:
        if not self.check_spec:
            return
        team_id = team.id if team is not None else None
        self.violations += spec_problems(self._known, self._required, method, args, team_id)

    def _dispatch(
        self, method: str, args: dict[str, Any], team: Team | None, request: web.Request
    ) -> Answer:
        self._check(method, args, team)
        until, status = self._outages.get(method, (0.0, 0))
        if time.monotonic() < until:
            return status, {"ok": False, "error": "internal_error"}, {}
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
        if method in STREAM_METHODS:
            return self.stream_call(method, args, team)
        if method.startswith("assistant.threads."):
            return self.assistant_call(method, args, team)
        if method == "views.open":
            return self._views_open(team, args)
        if method == "users.info":
            user = team.users.get(str(args.get("user")))
            if user is None:
                return 200, {"ok": False, "error": "user_not_found"}, {}
            return 200, {"ok": True, "user": user_json(user, team)}, {}
        if method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
            channel = str(args.get("channel"))
            if self.channels.get(channel) != team.id:
                return 200, {"ok": False, "error": "channel_not_found"}, {}
            limiter, key = (
                (self._updates, team.id) if method == "chat.update" else (self._posts, channel)
            )
            if method != "chat.postEphemeral" and (wait := limiter.retry_after(key)) is not None:
                return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(wait)}
            if (error := self._content_error(args, team)) is not None:
                return 200, {"ok": False, "error": error}, {}
            if method == "chat.postMessage":
                return 200, self._post(team, channel, args), {}
            if method == "chat.update":
                return self.stream_conflict(args) or self._update(team, channel, args)
            return 200, {"ok": True, "message_ts": f"{time.time():.6f}"}, {}
        self.violations.append(f"{method}: the fake does not serve it")
        return 200, {"ok": False, "error": "unknown_method"}, {}

    def _post(self, team: Team, channel: str, args: dict[str, Any]) -> dict[str, Any]:
        thread_ts = args.get("thread_ts")
        if thread_ts and (channel, thread_ts) not in self.messages:
            self.violations.append(f"chat.postMessage: thread_ts {thread_ts} not in {channel}")
        message = Message(
            channel=channel,
            ts=self._next_ts(),
            text="",
            bot_id=team.bot_id,
            user=team.bot_user_id,
            thread_ts=thread_ts,
        )
        self._show(message, args, team, update=False)
        self.messages[(channel, message.ts)] = message
        self.replied_in_thread(channel, thread_ts)
        return {"ok": True, "channel": channel, "ts": message.ts, "message": message.to_json()}

    def _update(self, team: Team, channel: str, args: dict[str, Any]) -> Answer:
        message = self.messages.get((channel, str(args.get("ts"))))
        if message is None:
            return 200, {"ok": False, "error": "message_not_found"}, {}
        if message.bot_id != team.bot_id:
            return 200, {"ok": False, "error": "cant_update_message"}, {}
        self._show(message, args, team, update=True)
        return 200, {"ok": True, "channel": channel, "ts": message.ts, "text": message.text}, {}

    def _content_error(self, args: dict[str, Any], team: Team) -> str | None:
        if (error := markdown_error(args, team)) is not None or uses_markdown_text(args, team):
            return error
        return content_error(args, self.max_text)

    def _show(self, message: Message, args: dict[str, Any], team: Team, *, update: bool) -> None:
        self.notified += [(message.ts, found) for found in show(message, args, team, update=update)]

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

    def _oauth(self, args: dict[str, Any], request: web.Request) -> Answer:
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


def user_json(user: User, team: Team) -> dict[str, Any]:
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
