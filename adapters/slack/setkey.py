"""/setkey in Slack: who may run it, and what each outcome tells the person, ephemerally.

`/setkey <key>` and `/setkey clear` are for workspace admins and owners (users.info) and the
people SLACK_ADMIN_USER_IDS names (`Admins`); `/setkey` alone opens a form for them
(`adapters/slack/setkey_form.py`) and shows anyone else whether a key is set. The key itself is
handed to `keys.set` and never logged or echoed: replies show only its last 4 characters.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.web_api import call_slack, unescape
from bot.errors import BotError, ConfigError, InputError, PlatformError
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.keys import KeyAdmin

log = logging.getLogger(__name__)

Action = Literal["status", "clear", "set"]
CLEAR_WORD = "clear"
ADMIN_FLAGS = ("is_admin", "is_owner", "is_primary_owner")
# A SLACK_ADMIN_USER_IDS entry: a user id, scoped by a workspace (T…) or an org (E…) id.
ADMIN_ENTRY = re.compile(r"(?:(?P<scope>[TE][A-Z0-9]+):)?(?P<user>[UW][A-Z0-9]+)")

CHECKING = "Checking that key with the model endpoint…"
NOT_ADMIN = (
    "Only workspace admins and owners can change this workspace's API key. Nothing was changed."
)
NO_PERMISSION_CHECK = (
    "Couldn't check your permissions with Slack, so nothing was changed. Try again."
)
# Slack reads "<...>" in message text as a link or a mention, even in code: escaped, it shows.
USAGE = "`/setkey &lt;key&gt;`"
# After the core's sentence saying which key answers (bot.keys.KeyStatus).
SET_ONE = f"A workspace admin can set this workspace's own key with `/setkey` or {USAGE}."
MANAGE_IT = f"Admins can replace it with `/setkey` or {USAGE}, or remove it with `/setkey clear`."
SAVED = "Saved. This workspace's API key now ends in …{last4}."
CLEARED = "Removed this workspace's API key; answers now show the best matching passages only."
NOTHING_TO_CLEAR = "This workspace has no API key to remove."
UNCHANGED = "{problem} Nothing was changed."


@dataclass(frozen=True)
class Asker:
    """Who ran /setkey (or submitted its form), and where."""

    workspace: str  # the bot's workspace id, slack:T1 or slack:E1:T1
    user: str
    team_id: str | None
    enterprise_id: str | None


def parse(text: str) -> tuple[Action, str]:
    """The subcommand and, for `set`, the key as typed."""
    arg = unescape(text).strip()  # an API key must reach the endpoint as typed
    if not arg:
        return "status", ""
    if arg.lower() == CLEAR_WORD:
        return "clear", ""
    return "set", arg


def problem(error: BotError) -> str:
    """What a refused key tells the admin: the input's own problem, or the error's sentence."""
    return error.detail if isinstance(error, InputError) else error.user_message


class Admins:
    """The people SLACK_ADMIN_USER_IDS lets set keys besides Slack's own admins and owners.

    `T123:U456` counts only in workspace T123, `E1:W456` in every workspace of the Enterprise
    Grid org E1. A bare `U456` counts only when one bot token serves one workspace
    (SLACK_BOT_TOKEN): with OAuth installs any workspace may install the bot, and a bare id
    would let whoever has that id there replace the key its answers are billed to.
    """

    def __init__(self, entries: Iterable[str], *, single_workspace: bool) -> None:
        self._scoped: set[tuple[str, str]] = set()
        self._bare: set[str] = set()
        ignored: list[str] = []
        for entry in entries:
            match = ADMIN_ENTRY.fullmatch(entry.strip())
            if match is None:
                raise ConfigError(
                    f"SLACK_ADMIN_USER_IDS: {entry!r} is not a Slack user id like U0123 or "
                    "a workspace and user like T0123:U0456."
                )
            scope, user = match.group("scope"), match.group("user")
            if scope:
                self._scoped.add((scope, user))
            elif single_workspace:
                self._bare.add(user)
            else:
                ignored.append(user)
        if ignored:
            log.warning(
                "SLACK_ADMIN_USER_IDS: %s ignored: with OAuth installs write TEAM:USER "
                "(like T0123:%s) so the id counts in that workspace only",
                ", ".join(ignored),
                ignored[0],
            )

    def includes(self, asker: Asker) -> bool:
        scopes = {asker.team_id, asker.enterprise_id} - {None}
        return asker.user in self._bare or any(
            (scope, asker.user) in self._scoped for scope in scopes
        )


class SetKey:
    def __init__(self, settings: Settings, keys: KeyAdmin) -> None:
        self._admins = Admins(
            settings.slack_admin_user_ids,
            single_workspace=settings.slack_client_id is None,
        )
        self._keys = keys

    @property
    def keys(self) -> KeyAdmin:
        return self._keys

    def ack_text(self, text: str) -> str | None:
        """What the immediate acknowledgement shows (validating a key takes a moment)."""
        action, _ = parse(text)
        return CHECKING if action == "set" else None

    async def run(
        self,
        text: str,
        asker: Asker,
        *,
        client: AsyncWebClient,
        respond: AsyncRespond,
        open_form: Callable[[], Awaitable[str | None]],
    ) -> None:
        """Do what `/setkey text` asks and reply ephemerally; `open_form` opens the form and
        returns what to tell the person instead, if anything."""
        action, key = parse(text)
        log.info("/setkey %s by %s in %s", action, asker.user, asker.workspace)
        try:
            message = await self._outcome(action, key, asker, client, open_form)
        except PlatformError as error:
            log.warning(
                "/setkey could not check %s in %s: %s", asker.user, asker.workspace, error.detail
            )
            message = NO_PERMISSION_CHECK
        except BotError as error:
            # Keys that are empty, garbled, rejected, or can't be checked right now.
            log.info("/setkey %s refused in %s: %s", action, asker.workspace, type(error).__name__)
            message = UNCHANGED.format(problem=problem(error))
        if message:
            await respond(text=message, response_type="ephemeral", replace_original=False)

    async def status(self, workspace: str) -> str:
        status = await self._keys.status(workspace)
        return f"{status.sentence()} {MANAGE_IT if status.source == 'own' else SET_ONE}"

    async def _outcome(
        self,
        action: Action,
        key: str,
        asker: Asker,
        client: AsyncWebClient,
        open_form: Callable[[], Awaitable[str | None]],
    ) -> str | None:
        if action == "status":
            # Admins get the form; everyone else sees whether a key is set.
            if await self.is_admin(client, asker):
                return await open_form()
            return await self.status(asker.workspace)
        if not await self.is_admin(client, asker):
            return NOT_ADMIN
        if action == "clear":
            return CLEARED if await self._keys.clear(asker.workspace) else NOTHING_TO_CLEAR
        return SAVED.format(last4=await self._keys.set(asker.workspace, key, by=asker.user))

    async def is_admin(self, client: AsyncWebClient, asker: Asker) -> bool:
        """Raises PlatformError when Slack can't tell."""
        if self._admins.includes(asker):
            return True
        response = await call_slack("users.info", client.users_info(user=asker.user))
        profile = response.get("user") or {}
        return any(bool(profile.get(flag)) for flag in ADMIN_FLAGS)
