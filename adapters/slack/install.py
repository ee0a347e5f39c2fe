"""Slack OAuth installs kept in the bot's own database: slack-sdk's store interfaces over `Store`.

One bot installation per workspace (or per Enterprise Grid org for org-wide installs), saved as
sealed JSON by the store; OAuth state values live in the same database so the install redirect
may land on any process sharing it.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from datetime import datetime
from typing import Any

from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from adapters.slack.allowed import AllowedTeams
from bot.store import Store

STATE_BYTES = 24  # entropy of an OAuth state value
STATE_LIFETIME_SECONDS = 600.0  # an install must finish within this long of starting


def workspace_id(enterprise_id: str | None, team_id: str | None) -> str:
    """The bot's workspace id: `slack:T123`, or `slack:E1:T123` inside an Enterprise Grid org."""
    if enterprise_id and team_id:
        return f"slack:{enterprise_id}:{team_id}"
    if team_id:
        return f"slack:{team_id}"
    if enterprise_id:
        return f"slack:{enterprise_id}"
    raise ValueError("a Slack workspace needs a team or an enterprise id")


def installation_id(
    enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None
) -> str:
    # An org-wide install serves every workspace of the org, so it is found by the org alone.
    if is_enterprise_install and enterprise_id:
        return f"slack:{enterprise_id}"
    return workspace_id(enterprise_id, team_id)


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__}")


class SlackInstallationStore(AsyncInstallationStore):
    """Bot-only installation store (the bot asks for no user scopes)."""

    def __init__(
        self, store: Store, logger: logging.Logger, allowed: AllowedTeams | None = None
    ) -> None:
        self._store = store
        self._logger = logger
        self._allowed = allowed or AllowedTeams(())

    @property
    def logger(self) -> logging.Logger:
        return self._logger

    async def async_save(self, installation: Installation) -> None:
        await self.async_save_bot(installation.to_bot())

    async def async_save_bot(self, bot: Bot) -> None:
        # Every install passes here: a workspace not in SLACK_ALLOWED_TEAMS is refused before
        # anything of it is kept (bolt shows adapters.slack.allowed's page).
        self._allowed.check_install(bot.enterprise_id, bot.team_id)
        key = installation_id(bot.enterprise_id, bot.team_id, bot.is_enterprise_install)
        data = json.dumps(bot.to_dict_for_copying(), default=_json_default)
        await self._store.save_slack_installation(key, data)
        self._logger.info("Slack app installed in %s", key)

    async def async_find_bot(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> Bot | None:
        if not (enterprise_id or team_id):
            return None
        key = installation_id(enterprise_id, team_id, is_enterprise_install)
        data = await self._store.get_slack_installation(key)
        if data is None:
            return None
        fields: dict[str, Any] = json.loads(data)
        return Bot(**fields)

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        # Only bot installs exist; bolt asks for full installations only when not bot-only.
        return None

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        if enterprise_id or team_id:
            await self._store.delete_slack_installation(workspace_id(enterprise_id, team_id))

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        if user_id is None:
            await self.async_delete_bot(enterprise_id=enterprise_id, team_id=team_id)


class SlackStateStore(AsyncOAuthStateStore):
    """OAuth `state` values, each valid once and for a limited time."""

    def __init__(
        self,
        store: Store,
        logger: logging.Logger,
        lifetime: float = STATE_LIFETIME_SECONDS,
    ) -> None:
        self._store = store
        self._logger = logger
        self._lifetime = lifetime

    @property
    def logger(self) -> logging.Logger:
        return self._logger

    async def async_issue(self, *args: object, **kwargs: object) -> str:
        state = secrets.token_urlsafe(STATE_BYTES)
        await self._store.issue_oauth_state(state, time.time() + self._lifetime)
        return state

    async def async_consume(self, state: str) -> bool:
        return await self._store.consume_oauth_state(state)
