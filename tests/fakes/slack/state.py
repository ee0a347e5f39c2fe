"""What the fake Slack knows and has seen: the fake app's credentials, the workspaces with their
tokens and people, every channel's messages with their edit history, the Web API calls made,
the bodies posted to response URLs, and the violations found; plus waiting for any of it."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SIGNING_SECRET = "fake-signing-secret"
CLIENT_ID = "1111.2222"
CLIENT_SECRET = "fake-client-secret"
APP_TOKEN = "xapp-1-A0FAKEAPP-1-fakeapptoken"
APP_ID = "A0FAKEAPP"


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
    # Whether its Slack knows standard Markdown and the feedback buttons element (see markdown.py)
    markdown: bool = True
    feedback_buttons: bool = True


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
    markdown: bool = False  # `text` is standard Markdown (sent as markdown_text)

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
    def shown(self) -> str:
        """What people read in the message: its markdown blocks, else its section blocks, else
        its text (with blocks, `text` is only the notification fallback)."""
        found = self.blocks or []
        markdown = [str(b.get("text", "")) for b in found if b.get("type") == "markdown"]
        sections = [str(b["text"]["text"]) for b in found if b.get("type") == "section"]
        if markdown or sections:
            return "\n".join(markdown or sections)
        return self.text

    @property
    def buttons(self) -> dict[str, str]:
        """action_id -> value of the buttons in the message's blocks; a feedback buttons
        element's two as `action_id:positive` and `action_id:negative`."""
        return {key: action["value"] for key, (_, action) in self.controls().items()}

    def controls(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Each button by its `buttons` key: its block_id, and the action a click sends."""
        found: dict[str, tuple[str, dict[str, Any]]] = {}
        for block in self.blocks or []:
            block_id = str(block.get("block_id", ""))
            for element in block.get("elements", []):
                kind, action_id = element.get("type"), element.get("action_id", "")
                if kind == "button":
                    action = {"type": kind, "action_id": action_id, "value": element["value"]}
                    found[action_id] = (block_id, action)
                elif kind == "feedback_buttons":
                    for side in ("positive", "negative"):
                        button = element[f"{side}_button"]
                        action = {
                            "type": kind,
                            "action_id": action_id,
                            "value": button["value"],
                            "text": button["text"],
                        }
                        found[f"{action_id}:{side}"] = (block_id, action)
        return found


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    team: str | None
    status: int
    error: str | None
    at: float = field(default_factory=time.monotonic)  # when the fake received it


def blocks(value: Any) -> list[dict[str, Any]] | None:
    """Blocks as an argument carries them (a JSON string in a form, a list in JSON)."""
    if value is None:
        return None
    found = json.loads(value) if isinstance(value, str) else value
    return list(found)


class SlackState:
    """The workspaces, channels and messages, and the record of what the bot did to them."""

    def __init__(self) -> None:
        self.teams: dict[str, Team] = {}
        self.messages: dict[tuple[str, str], Message] = {}  # (channel, ts)
        self.channels: dict[str, str] = {}  # channel -> team
        self.channel_types: dict[str, str] = {}  # channel -> channel, im, ...
        self.calls: list[Call] = []
        self.responses: list[dict[str, Any]] = []  # bodies posted to response_url
        self.violations: list[str] = []
        self.notified: list[tuple[str, str]] = []  # (message ts, mention) a write would ping
        self.codes: dict[str, str] = {}  # OAuth code -> team id
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()

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
