"""The guard that drops Slack requests from workspaces the bot does not serve: those not in
SLACK_ALLOWED_TEAMS (`adapters/slack/allowed.py`), and, for a single-token app (SLACK_BOT_TOKEN),
any workspace but the token's own.

The same Slack app may be installed in more than one workspace, and Slack signs every
workspace's requests with the app's one signing secret, so a valid signature does not say the
request is for this bot's token. bolt's single-workspace authorization never compares teams: it
would answer another workspace's question with this one's token (and bill this one's API key).
The guard runs before bolt's authorization and acknowledges such requests without handling them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.allowed import NOT_ALLOWED, AllowedTeams
from adapters.slack.web_api import call_slack
from bot.errors import PlatformError

log = logging.getLogger(__name__)

# A slash command's ack is shown to the person who ran it; other requests' acks are not shown.
OTHER_WORKSPACE = "This bot is set up for another Slack workspace, so it can't help here."
# Requests about the app rather than a workspace (Slack checking the Request URL at setup).
NO_TEAM_REQUESTS = frozenset({"url_verification"})


@dataclass(frozen=True)
class Home:
    """Whom the token belongs to, as auth.test reports it."""

    team_id: str | None
    enterprise_id: str | None
    is_enterprise_install: bool

    def serves(self, enterprise_id: str | None, team_id: str | None) -> bool:
        # An org-wide token serves every workspace of its Enterprise Grid org.
        if self.is_enterprise_install:
            return enterprise_id is not None and enterprise_id == self.enterprise_id
        return team_id is not None and team_id == self.team_id

    @property
    def name(self) -> str:
        return str(self.enterprise_id if self.is_enterprise_install else self.team_id)


class HomeTeam:
    """bolt's `before_authorize` middleware: the allow-list, then (with a `client`: one token)
    the token's own workspace."""

    def __init__(self, client: AsyncWebClient | None, allowed: AllowedTeams) -> None:
        # The app's own client: bolt's per-request client carries the request's team_id, which
        # Slack refuses to pair with another team's token. None with OAuth installs.
        self._client = client
        self._allowed = allowed
        self._home: Home | None = None
        self._asking = asyncio.Lock()

    async def guard(
        self,
        context: AsyncBoltContext,
        body: dict[str, Any],
        next_: Callable[[], Awaitable[None]],
    ) -> BoltResponse | None:
        if body.get("type") in NO_TEAM_REQUESTS:
            await next_()
            return None
        if not self._allowed.allows(context.enterprise_id, context.team_id):
            team = context.team_id or context.enterprise_id
            log.info(
                "Slack %s from team %s, not in SLACK_ALLOWED_TEAMS: ignored", _kind(body), team
            )
            return BoltResponse(status=200, body=NOT_ALLOWED if "command" in body else "")
        if self._client is None:
            await next_()
            return None
        home = await self._find()
        # Unknown only when auth.test failed: bolt's own authorization, next, then refuses
        # everything that needs the token, and lets through what does not (an uninstall).
        if home is None or home.serves(context.enterprise_id, context.team_id):
            await next_()
            return None
        team = context.team_id or context.enterprise_id
        log.info("Slack %s from team %s, not this bot's %s: ignored", _kind(body), team, home.name)
        return BoltResponse(status=200, body=OTHER_WORKSPACE if "command" in body else "")

    async def _find(self) -> Home | None:
        assert self._client is not None
        async with self._asking:  # one auth.test, however many requests arrive at start
            if self._home is None:
                try:
                    found = await call_slack("auth.test", self._client.auth_test())
                except PlatformError as error:
                    log.warning("could not tell which workspace the token is for: %s", error)
                    return None
                self._home = Home(
                    team_id=found.get("team_id"),
                    enterprise_id=found.get("enterprise_id"),
                    is_enterprise_install=bool(found.get("is_enterprise_install")),
                )
            return self._home


def _kind(body: dict[str, Any]) -> str:
    event = body.get("event")
    if isinstance(event, dict) and event.get("type"):
        return f"event {event['type']}"
    if body.get("command"):
        return f"command {body['command']}"
    return str(body.get("type") or "request")
