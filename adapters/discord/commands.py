"""The bot's commands: /ask, the "Ask about this message" message command, /setkey (with its
modal), and syncing them only on change.

/ask and the message command can be installed to a server or to a person's account, and run in
servers, the bot's DMs and other private channels (`integration_types`, `contexts`); /setkey is for
servers that installed the bot.

Discord limits command creates per day, so the command set is hashed and synced at start only
when the hash stored for that application and scope differs. /setkey is for members with Manage
Server: hidden from others by default permissions and checked again at run time; the key is
typed into a modal, so it never appears in chat, and is handed straight to the core's KeyAdmin.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands

from adapters.discord.allowed import AllowedGuilds
from bot.errors import BotError
from bot.settings import Settings
from bot.store import Store

if TYPE_CHECKING:  # types only: importing an adapter loads no index or model
    from bot.keys import KeyAdmin

log = logging.getLogger(__name__)

MAX_QUESTION = 2000  # characters of a /ask question
MAX_KEY = 400  # characters accepted in the key field; real keys are far shorter
STATE_PREFIX = "discord.commands"
SETKEY_ACTIONS = (
    "set (default) opens a private form; clear removes the key; status shows if one is set"
)

NOT_ADMIN = "Only members with the Manage Server permission can manage this server's API key."
SERVER_ONLY = "This command works in a server, not in direct messages."
EMPTY_KEY = "The key was empty, so nothing changed."
NOTHING_CHANGED = "Nothing changed."


ASK_ABOUT = "Ask about this message"  # the message command's name, as the Apps menu shows it

# What /ask does with a question (and whether to answer in a thread), and what the message
# command does with its message: the client's answering (see adapters/discord/client.py).
AskHandler = Callable[[discord.Interaction[Any], str, bool], Awaitable[None]]
AskAboutHandler = Callable[[discord.Interaction[Any], discord.Message], Awaitable[None]]


def workspace_of(guild_id: int) -> str:
    return f"discord:{guild_id}"


async def _setkey(
    interaction: discord.Interaction[Any],
    action: Literal["set", "clear", "status"],
    keys: KeyAdmin,
) -> None:
    if interaction.guild_id is None:
        await _private(interaction, SERVER_ONLY)
        return
    if not _may_manage(interaction):
        log.info(
            "setkey refused for user %s in guild %s", interaction.user.id, interaction.guild_id
        )
        await _private(interaction, NOT_ADMIN)
        return
    workspace = workspace_of(interaction.guild_id)
    if action == "set":
        # A modal must be the first response: no defer before it.
        await interaction.response.send_modal(SetKeyModal(keys))
    elif action == "clear":
        removed = await keys.clear(workspace)
        log.info("setkey clear by %s in %s: %s", interaction.user.id, workspace, removed)
        await _private(
            interaction,
            "Cleared: this server's API key is removed."
            if removed
            else "No key was set for this server, so nothing changed.",
        )
    else:
        status = await keys.status(workspace)
        await _private(
            interaction,
            f"{status.sentence('server')} "
            + (
                "Members with Manage Server can replace it with /setkey."
                if status.source == "own"
                else "Members with Manage Server can set the server's own key with /setkey."
            ),
        )


class SetKeyModal(discord.ui.Modal, title="Set this server's API key"):
    """The private form the key is typed into; its value is never logged or echoed."""

    key: discord.ui.TextInput[SetKeyModal] = discord.ui.TextInput(
        label="OpenAI-compatible API key",
        style=discord.TextStyle.short,
        placeholder="sk-...",
        required=True,
        max_length=MAX_KEY,
    )

    def __init__(self, keys: KeyAdmin) -> None:
        super().__init__()
        self._keys = keys

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        if interaction.guild_id is None:
            await _private(interaction, SERVER_ONLY)
            return
        if not _may_manage(interaction):
            await _private(interaction, NOT_ADMIN)
            return
        value = self.key.value.strip()
        if not value:
            await _private(interaction, EMPTY_KEY)
            return
        workspace = workspace_of(interaction.guild_id)
        # Validating against the model endpoint can take longer than Discord's 3 seconds.
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            last4 = await self._keys.set(workspace, value, by=str(interaction.user.id))
        except BotError as error:
            log.info("setkey in %s rejected: %s", workspace, type(error).__name__)
            await interaction.edit_original_response(
                content=f"{error.user_message} {NOTHING_CHANGED}"
            )
            return
        log.info("setkey in %s by %s: saved", workspace, interaction.user.id)
        await interaction.edit_original_response(
            content=f"Saved: this server now uses the key ending in …{last4}."
        )

    async def on_error(  # type: ignore[override]  # discord.py narrows BaseView.on_error
        self, interaction: discord.Interaction[Any], error: Exception, /
    ) -> None:
        # discord.py's default prints the modal; log only the failure's type.
        log.error("setkey modal failed: %s", type(error).__name__)
        message = f"Saving the key failed. {NOTHING_CHANGED}"
        if interaction.response.is_done():
            await interaction.edit_original_response(content=message)
        else:
            await _private(interaction, message)


def _may_manage(interaction: discord.Interaction[Any]) -> bool:
    # The member's permissions as Discord resolved them for this interaction.
    return interaction.guild_id is not None and interaction.permissions.manage_guild


async def _private(interaction: discord.Interaction[Any], text: str) -> None:
    await interaction.response.send_message(text, ephemeral=True)


class _Tree(app_commands.CommandTree[Any]):
    """The command tree, checking DISCORD_ALLOWED_GUILDS once before every command."""

    def __init__(self, client: discord.Client, allowed: AllowedGuilds) -> None:
        super().__init__(client)
        self._allowed = allowed

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        return await self._allowed.check(interaction)


def build_tree(
    client: discord.Client,
    *,
    ask: AskHandler,
    keys: KeyAdmin,
    allowed: AllowedGuilds | None = None,
    ask_about: AskAboutHandler | None = None,
) -> app_commands.CommandTree[Any]:
    """/ask, "Ask about this message" and /setkey on `client`, answering through the callables
    they are handed, in the servers `allowed` lists (all, without it)."""
    tree: app_commands.CommandTree[Any] = _Tree(client, allowed or AllowedGuilds(()))

    @app_commands.command(name="ask", description="Ask a question about the documents")
    @app_commands.describe(
        question="What you want to know",
        thread="Open a thread for the answer and your follow-ups",
    )
    @app_commands.allowed_installs(guilds=True, users=True)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    async def ask_command(
        interaction: discord.Interaction[Any],
        question: app_commands.Range[str, 1, MAX_QUESTION],
        thread: bool = False,
    ) -> None:
        await ask(interaction, question, thread)

    tree.add_command(ask_command)
    if ask_about is not None:

        @app_commands.allowed_installs(guilds=True, users=True)
        @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
        async def ask_about_command(
            interaction: discord.Interaction[Any], message: discord.Message
        ) -> None:
            await ask_about(interaction, message)

        tree.add_command(app_commands.ContextMenu(name=ASK_ABOUT, callback=ask_about_command))

    @app_commands.command(
        name="setkey", description="Set, clear or check this server's model API key (Manage Server)"
    )
    @app_commands.describe(action=SETKEY_ACTIONS)
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.guild_only()
    @app_commands.allowed_installs(guilds=True, users=False)
    async def setkey_command(
        interaction: discord.Interaction[Any],
        action: Literal["set", "clear", "status"] = "set",
    ) -> None:
        await _setkey(interaction, action, keys)

    tree.add_command(setkey_command)
    return tree


def commands_hash(tree: app_commands.CommandTree[Any]) -> str:
    payload = sorted((command.to_dict(tree) for command in tree.get_commands()), key=str)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


async def sync_commands(
    tree: app_commands.CommandTree[Any], store: Store, settings: Settings, application_id: int
) -> list[str]:
    """Sync to DISCORD_GUILD_IDS (instant) or globally, only where the command set changed.

    Scopes synced before but no longer configured are emptied, so moving between guild and
    global commands never shows every command twice. Returns the scopes written now.
    """
    digest = commands_hash(tree)
    targets = {f"guild:{int(guild)}" for guild in settings.discord_guild_ids} or {"global"}
    listed = f"{STATE_PREFIX}:{application_id}:scopes"
    previous = set(json.loads(await store.get_state(listed) or "[]"))
    written: list[str] = []
    for scope in sorted(targets):
        state = f"{STATE_PREFIX}:{application_id}:{scope}"
        if await store.get_state(state) == digest:
            continue
        guild = None if scope == "global" else discord.Object(id=int(scope.split(":")[1]))
        if guild is not None:
            tree.copy_global_to(guild=guild)
        await tree.sync(guild=guild)
        await store.set_state(state, digest)
        log.info("synced slash commands (%s)", scope)
        written.append(scope)
    kept = set(targets)
    for scope in sorted(previous - targets):
        try:
            await _empty(tree.client, application_id, scope)
        except discord.HTTPException as error:
            # e.g. the bot left that guild; try again at the next start.
            log.warning("could not remove commands from %s: HTTP %s", scope, error.status)
            kept.add(scope)
            continue
        await store.set_state(f"{STATE_PREFIX}:{application_id}:{scope}", "")
        log.info("removed slash commands (%s)", scope)
        written.append(scope)
    await store.set_state(listed, json.dumps(sorted(kept)))
    return written


async def _empty(client: discord.Client, application_id: int, scope: str) -> None:
    if scope == "global":
        await client.http.bulk_upsert_global_commands(application_id, payload=[])
    else:
        guild_id = int(scope.split(":")[1])
        await client.http.bulk_upsert_guild_commands(application_id, guild_id, payload=[])
