"""Finding a Slack thread again after a restart, to end an answer a dead process left behind.

The journal keeps where each answer is shown (`address`); at start-up the core hands those of
dead processes back here, and gets a `SlackSurface` with the workspace's bot token.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.formats import SlackFormats
from adapters.slack.install import SlackInstallationStore
from adapters.slack.surfaces import MendingSlackSurface
from bot.journal import Address, Reopen
from bot.settings import Settings
from bot.surface import Surface

log = logging.getLogger(__name__)


def address(context: AsyncBoltContext, team: str, channel: str, thread_ts: str) -> Address:
    return Address(
        "slack",
        {
            "team": team,
            "team_id": context.team_id,
            "enterprise_id": context.enterprise_id,
            "org_wide": bool(context.is_enterprise_install),
            "channel": channel,
            "thread_ts": thread_ts,
        },
    )


def reopener(
    settings: Settings,
    session: aiohttp.ClientSession,
    installations: SlackInstallationStore | None,
    formats: SlackFormats,
    logger: logging.Logger,
) -> Reopen:
    """How the journal reaches a Slack thread again: with the one bot token, or the token of
    the workspace's (or org's) installation."""

    async def reopen(where: dict[str, Any]) -> Surface | None:
        token = await _token(settings, installations, where)
        if token is None:
            log.info("no Slack token for %s any more: the answer can't be ended", where["team"])
            return None
        client = AsyncWebClient(
            token=token, base_url=settings.slack_api_url, logger=logger, session=session
        )
        # A message still streaming when its process died is stopped before it is ended.
        return MendingSlackSurface(
            client, settings, team=str(where["team"]), channel=str(where["channel"]),
            thread_ts=str(where["thread_ts"]), formats=formats,
        )  # fmt: skip

    return reopen


async def _token(
    settings: Settings, installations: SlackInstallationStore | None, where: dict[str, Any]
) -> str | None:
    if installations is None:
        return settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    bot = await installations.async_find_bot(
        enterprise_id=where.get("enterprise_id"),
        team_id=where.get("team_id"),
        is_enterprise_install=bool(where.get("org_wide")),
    )
    return bot.bot_token if bot is not None else None
