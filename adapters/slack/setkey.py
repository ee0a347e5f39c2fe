"""/setkey in Slack: who may run it, and what each outcome tells the person, ephemerally.

`/setkey <key>` and `/setkey clear` are for workspace admins and owners (users.info) and the user
ids in SLACK_ADMIN_USER_IDS; `/setkey` alone shows whether a key is set. The key itself is handed
to `keys.set` and never logged or echoed: replies show only its last 4 characters.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.web_api import call_slack, unescape
from bot.errors import BotError, InputError, PlatformError
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.keys import KeyAdmin

log = logging.getLogger(__name__)

Action = Literal["status", "clear", "set"]
CLEAR_WORD = "clear"
ADMIN_FLAGS = ("is_admin", "is_owner", "is_primary_owner")

CHECKING = "Checking that key with the model endpoint…"
NOT_ADMIN = (
    "Only workspace admins and owners can change this workspace's API key. Nothing was changed."
)
NO_PERMISSION_CHECK = (
    "Couldn't check your permissions with Slack, so nothing was changed. Try again."
)
# Slack reads "<...>" in message text as a link or a mention, even in code: escaped, it shows.
USAGE = "`/setkey &lt;key&gt;`"
NO_KEY = (
    "No API key is set for this workspace, so answers show the best matching passages only. "
    f"A workspace admin can set one with {USAGE}."
)
KEY_SET = (
    "This workspace's API key is set (ending in …{last4}). Admins can replace it with "
    f"{USAGE} or remove it with `/setkey clear`."
)
SAVED = "Saved. This workspace's API key now ends in …{last4}."
CLEARED = "Removed this workspace's API key; answers now show the best matching passages only."
NOTHING_TO_CLEAR = "This workspace has no API key to remove."
UNCHANGED = "{problem} Nothing was changed."


def parse(text: str) -> tuple[Action, str]:
    """The subcommand and, for `set`, the key as typed."""
    arg = unescape(text).strip()  # an API key must reach the endpoint as typed
    if not arg:
        return "status", ""
    if arg.lower() == CLEAR_WORD:
        return "clear", ""
    return "set", arg


class SetKey:
    def __init__(self, settings: Settings, keys: KeyAdmin) -> None:
        self._admins = frozenset(settings.slack_admin_user_ids)
        self._keys = keys

    def ack_text(self, text: str) -> str | None:
        """What the immediate acknowledgement shows (validating a key takes a moment)."""
        action, _ = parse(text)
        return CHECKING if action == "set" else None

    async def run(
        self,
        text: str,
        *,
        workspace: str,
        user: str,
        client: AsyncWebClient,
        respond: AsyncRespond,
    ) -> None:
        action, key = parse(text)
        log.info("/setkey %s by %s in %s", action, user, workspace)
        try:
            message = await self._outcome(action, key, workspace, user, client)
        except PlatformError as error:
            log.warning("/setkey could not check %s in %s: %s", user, workspace, error.detail)
            message = NO_PERMISSION_CHECK
        except BotError as error:
            # Keys that are empty, garbled, rejected, or can't be checked right now.
            log.info("/setkey %s refused in %s: %s", action, workspace, type(error).__name__)
            problem = error.detail if isinstance(error, InputError) else error.user_message
            message = UNCHANGED.format(problem=problem)
        await respond(text=message, response_type="ephemeral", replace_original=False)

    async def _outcome(
        self, action: Action, key: str, workspace: str, user: str, client: AsyncWebClient
    ) -> str:
        if action == "status":
            last4 = await self._keys.status(workspace)
            return NO_KEY if last4 is None else KEY_SET.format(last4=last4)
        if not await self._is_admin(client, user):
            return NOT_ADMIN
        if action == "clear":
            return CLEARED if await self._keys.clear(workspace) else NOTHING_TO_CLEAR
        return SAVED.format(last4=await self._keys.set(workspace, key, by=user))

    async def _is_admin(self, client: AsyncWebClient, user: str) -> bool:
        if user in self._admins:
            return True
        response = await call_slack("users.info", client.users_info(user=user))
        profile = response.get("user") or {}
        return any(bool(profile.get(flag)) for flag in ADMIN_FLAGS)
