"""Slack calling the bot, for the fake Slack: signed Events API, slash-command and interactivity
requests (button clicks, modal submissions) over HTTP (X-Slack-Signature v0, X-Slack-Retry-Num
for redeliveries), and the same payloads over Socket Mode."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp

from tests.fakes.slack.assistant import AssistantApi, AssistantThread
from tests.fakes.slack.state import APP_ID, Message
from tests.fakes.slack.views import View


class SlackSender(AssistantApi):
    """Builds what Slack sends and sends it to `bot_url` (HTTP) or down the open socket."""

    bot_url: str
    url: str
    signing_secret: str
    _session: aiohttp.ClientSession | None
    _sockets: list[Any]

    def events_for(self, team_id: str, message: Message) -> list[dict[str, Any]]:
        """The events Slack sends for a message: `message`, plus `app_mention` when it mentions
        the bot outside a DM (the two have different event ids)."""
        team = self.teams[team_id]
        channel_type = self.channel_types.get(message.channel, "channel")
        base = {
            "user": message.user,
            "text": message.text,
            "ts": message.ts,
            "channel": message.channel,
            "event_ts": message.ts,
            "team": team_id,
        }
        if message.thread_ts:
            base["thread_ts"] = message.thread_ts
        events = [{"type": "message", "channel_type": channel_type, **base}]
        if f"<@{team.bot_user_id}>" in message.text and channel_type != "im":
            events.insert(0, {"type": "app_mention", **base})
        return [self.envelope(team_id, event) for event in events]

    def envelope(
        self, team_id: str, event: dict[str, Any], *, org_wide: bool = False
    ) -> dict[str, Any]:
        """The Events API wrapper of `event` in `team_id`; `org_wide`: as delivered to an
        installation for the team's whole Enterprise Grid org (authorizations say so)."""
        team = self.teams[team_id]
        assert team.enterprise_id or not org_wide, "an org-wide install needs an org"
        return {
            "token": "legacy-verification-token",
            "team_id": team_id,
            "enterprise_id": team.enterprise_id,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{next(self._ids):08d}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": team.enterprise_id,
                    "team_id": team_id,
                    "user_id": team.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": org_wide,
                }
            ],
            "is_ext_shared_channel": False,
        }

    async def deliver(
        self, envelope: dict[str, Any], *, retry_num: int | None = None, url: str | None = None
    ) -> aiohttp.ClientResponse:
        """Post an event to the bot (`url`: to that replica instead of `bot_url`, as a load
        balancer in front of several would); `retry_num` marks a redelivery."""
        headers = {"Content-Type": "application/json"}
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        return await self._send(json.dumps(envelope), headers, url)

    async def say(self, team_id: str, channel: str, user: str, text: str, **kw: Any) -> Message:
        """A person writes; every event Slack would send for it is delivered to the bot."""
        message = self.user_says(team_id, channel, user, text, **kw)
        for envelope in self.events_for(team_id, message):
            response = await self.deliver(envelope)
            assert response.status == 200, await response.text()
        return message

    async def start_assistant_thread(self, team_id: str, user: str) -> AssistantThread:
        """A person opens a new chat in the app's agent view: Slack makes the thread and tells
        the bot (`assistant_thread_started`). They then write in it with `say(..., channel_type=
        "im", thread_ts=thread.thread_ts)`."""
        thread = self.open_assistant_thread(team_id, user)
        response = await self.deliver(self.envelope(team_id, self.assistant_thread_started(thread)))
        assert response.status == 200, await response.text()
        return thread

    async def command(
        self,
        team_id: str,
        user: str,
        text: str,
        *,
        channel: str = "C0CMD",
        name: str = "/setkey",
        url: str | None = None,
    ) -> aiohttp.ClientResponse:
        """A person runs a slash command; the bot's HTTP response is the ack (`url`: the
        replica it goes to, else `bot_url`)."""
        form = self.command_payload(team_id, user, text, channel=channel, name=name)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return await self._send(urlencode(form), headers, url)

    async def click(
        self, team_id: str, message: Message, action_id: str, user: str
    ) -> aiohttp.ClientResponse:
        """A person clicks a button the bot put on `message` (it must really be there): a
        `buttons` key, so `feedback:negative` for a feedback buttons element's 👎."""
        block_id, action = message.controls()[action_id]
        team = self.teams[team_id]
        payload = {
            "type": "block_actions",
            "team": {"id": team_id, "domain": team_id.lower()},
            "enterprise": {"id": team.enterprise_id} if team.enterprise_id else None,
            "user": {"id": user, "team_id": team_id},
            "api_app_id": APP_ID,
            "token": "legacy-verification-token",
            "container": {
                "type": "message",
                "message_ts": message.ts,
                "channel_id": message.channel,
                "is_ephemeral": False,
            },
            "trigger_id": self.issue_trigger(team_id, user),
            "channel": {"id": message.channel},
            "message": message.to_json(),
            "response_url": f"{self.url}/response/{next(self._ids)}",
            "actions": [{**action, "block_id": block_id, "action_ts": f"{time.time():.6f}"}],
        }
        body = urlencode({"payload": json.dumps(payload)})
        return await self._send(body, {"Content-Type": "application/x-www-form-urlencoded"})

    async def submit(self, view: View, values: dict[str, str]) -> aiohttp.ClientResponse:
        """The person `view` is open for submits it, `values` (block_id -> text) typed into its
        inputs; Slack then does what the bot's answer says (`ViewsApi.answered`)."""
        assert view.open, "only an open view can be submitted"
        inputs = view.inputs()
        state = {
            block: {inputs[block]: {"type": "plain_text_input", "value": value}}
            for block, value in values.items()
        }
        team = self.teams[view.team]
        payload: dict[str, Any] = {
            "type": "view_submission",
            "team": {
                "id": team.id,
                "domain": team.id.lower(),
                "enterprise_id": team.enterprise_id,
            },
            "enterprise": {"id": team.enterprise_id, "name": "Org"} if team.enterprise_id else None,
            "user": {"id": view.user, "team_id": team.id, "name": view.user.lower()},
            "api_app_id": APP_ID,
            "token": "legacy-verification-token",
            "trigger_id": self.issue_trigger(team.id, view.user),
            "view": view.to_json(state),
            "response_urls": [],
            "is_enterprise_install": False,
        }
        body = urlencode({"payload": json.dumps(payload)})
        response = await self._send(body, {"Content-Type": "application/x-www-form-urlencoded"})
        self.answered(view, response.status, await response.text())
        await self._notify()
        return response

    async def _send(
        self, body: str, headers: dict[str, str], url: str | None = None
    ) -> aiohttp.ClientResponse:
        url = url or self.bot_url
        assert self._session is not None and url
        timestamp = str(int(time.time()))
        signature = hmac.new(
            self.signing_secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256
        ).hexdigest()
        signed = {
            **headers,
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": f"v0={signature}",
        }
        response = await self._session.post(
            f"{url}/slack/events", data=body.encode(), headers=signed
        )
        await response.read()
        return response

    async def push(
        self,
        payload: dict[str, Any],
        kind: str = "events_api",
        *,
        connection: int = -1,
        retry_attempt: int = 0,
    ) -> str:
        """Send a payload (`events_api`, `slash_commands`, `interactive`) over an open Socket
        Mode connection (`connection`: its index in the order they opened; the newest by
        default); `retry_attempt` > 0 marks a redelivery. Returns the envelope id its ack must
        carry."""
        envelope_id = f"env-{next(self._ids)}"
        await self._sockets[connection].send_json(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "payload": payload,
                "accepts_response_payload": kind != "events_api",
                "retry_attempt": retry_attempt,
                "retry_reason": "timeout" if retry_attempt else "",
            }
        )
        return envelope_id

    def command_payload(
        self, team_id: str, user: str, text: str, *, channel: str = "C0CMD", name: str = "/setkey"
    ) -> dict[str, str]:
        """A slash command as Slack sends it (a form over HTTP, a JSON object over a socket)."""
        team = self.teams[team_id]
        self.channels.setdefault(channel, team_id)
        form = {
            "token": "legacy-verification-token",
            "team_id": team_id,
            "team_domain": team_id.lower(),
            "channel_id": channel,
            "channel_name": "general",
            "user_id": user,
            "user_name": user.lower(),
            "command": name,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": f"{self.url}/response/{next(self._ids)}",
            "trigger_id": self.issue_trigger(team_id, user),
        }
        if team.enterprise_id:
            form["enterprise_id"] = team.enterprise_id
        return form

    @property
    def socket_connected(self) -> bool:
        return any(not ws.closed for ws in self._sockets)

    @property
    def socket_connections(self) -> int:
        """How many Socket Mode connections are open (one per replica in Socket Mode)."""
        return sum(1 for ws in self._sockets if not ws.closed)
