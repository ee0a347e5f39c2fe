"""/setkey on Discord: a modal for members with Manage Server, validated against the model
endpoint, sealed at rest, confirmed privately with the last 4 characters, never logged."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from adapters.discord.commands import EMPTY_KEY, NOT_ADMIN
from tests.discord.discord_rig import RunningBot, Server
from tests.fakes.discord import EPHEMERAL, MANAGE_GUILD, FakeDiscord, Interaction
from tests.fakes.openai import FAKE_KEY, FakeOpenAI

WRONG_KEY = "sk-wrong-key-not-accepted-9999"


async def private_reply(fake: FakeDiscord, interaction: Interaction) -> str:
    """The ephemeral text the person sees: an immediate reply, or the deferred one once edited."""

    def shown() -> str | None:
        if not interaction.callbacks:
            return None
        first = interaction.callbacks[0]
        if first["type"] == 4:
            assert first["data"]["flags"] & EPHEMERAL
            return str(first["data"]["content"])
        message = fake.messages.get(interaction.original_id or "")
        if message is None or message["loading"]:
            return None
        assert message["flags"] & EPHEMERAL
        return str(message["content"])

    return str(await fake.wait_for(shown))


async def open_modal(fake: FakeDiscord, server: Server, user: str) -> dict[str, Any]:
    command = await fake.slash(server.guild_id, server.channel_id, user, "setkey")
    return dict(await fake.wait_for(lambda: command.modal))


async def submit(fake: FakeDiscord, server: Server, user: str, value: str) -> str:
    modal = await open_modal(fake, server, user)
    submitted = await fake.submit_modal(server.guild_id, server.channel_id, user, modal, value)
    return await private_reply(fake, submitted)


async def test_admin_sets_the_key_through_a_modal_and_it_is_sealed_and_never_logged(
    fake: FakeDiscord,
    servers: list[Server],
    bot: RunningBot,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # discord.py dumps gateway payloads at DEBUG
    alpha = servers[0]
    modal = await open_modal(fake, alpha, alpha.admin)
    [row] = modal["components"]
    [field] = row["components"]
    assert field["type"] == 4 and field["style"] == 1 and field["required"] is True
    submitted = await fake.submit_modal(
        alpha.guild_id, alpha.channel_id, alpha.admin, modal, f"  {FAKE_KEY}  "
    )
    text = await private_reply(fake, submitted)
    assert submitted.callbacks[0]["type"] == 5  # deferred while the key is checked
    assert text == f"Saved: this server now uses the key ending in …{FAKE_KEY[-4:]}."

    assert await bot.core.store.get_api_key(alpha.workspace) == FAKE_KEY
    data_dir = bot.settings.data_dir
    for file in data_dir.glob("bot.db*"):
        assert FAKE_KEY.encode() not in file.read_bytes(), file.name
    assert "INTERACTION_CREATE" in caplog.text  # the gateway dump was there, redacted
    assert FAKE_KEY not in caplog.text
    for chat in fake.requests:
        assert FAKE_KEY not in str(chat[2])  # nor echoed into Discord


async def test_member_without_manage_server_is_refused_and_nothing_changes(
    fake: FakeDiscord, servers: list[Server], bot: RunningBot
) -> None:
    alpha = servers[0]
    command = await fake.slash(alpha.guild_id, alpha.channel_id, alpha.member, "setkey")
    assert await private_reply(fake, command) == NOT_ADMIN
    assert command.modal is None

    # A forged modal submit from the member is checked again.
    modal = await open_modal(fake, alpha, alpha.admin)
    forged = await fake.submit_modal(
        alpha.guild_id, alpha.channel_id, alpha.member, modal, FAKE_KEY
    )
    assert await private_reply(fake, forged) == NOT_ADMIN
    assert await bot.core.store.get_api_key(alpha.workspace) is None


async def test_setkey_is_hidden_from_members_by_default_and_guild_only(
    fake: FakeDiscord, servers: list[Server], bot: RunningBot
) -> None:
    for guild_id in fake.guilds:
        commands = {c["name"]: c for c in fake.commands[guild_id]}
        assert int(commands["setkey"]["default_member_permissions"]) == MANAGE_GUILD
        assert commands["setkey"]["contexts"] == [0]  # guild only
        assert commands["ask"]["default_member_permissions"] is None


async def test_invalid_and_empty_keys_get_a_clear_message_and_change_nothing(
    fake: FakeDiscord, fake_openai: FakeOpenAI, servers: list[Server], bot: RunningBot
) -> None:
    alpha = servers[0]
    assert (await submit(fake, alpha, alpha.admin, FAKE_KEY)).startswith("Saved")

    text = await submit(fake, alpha, alpha.admin, WRONG_KEY)
    assert "rejected" in text and text.endswith("Nothing changed.")
    assert WRONG_KEY not in text

    assert await submit(fake, alpha, alpha.admin, "   ") == EMPTY_KEY

    fake_openai.fail(503, endpoint="models")
    text = await submit(fake, alpha, alpha.admin, "sk-another-key-5555")
    assert text.endswith("Nothing changed.")
    assert await bot.core.store.get_api_key(alpha.workspace) == FAKE_KEY


async def test_status_and_clear_per_server(
    fake: FakeDiscord, servers: list[Server], bot: RunningBot
) -> None:
    alpha, beta = servers

    async def run(server: Server, action: str) -> str:
        command = await fake.slash(
            server.guild_id, server.channel_id, server.admin, "setkey", action=action
        )
        return await private_reply(fake, command)

    assert (await run(alpha, "status")).startswith("No API key is set for this server")
    await submit(fake, alpha, alpha.admin, FAKE_KEY)
    assert (await run(alpha, "status")).startswith(
        f"Answers here are written with this server's key ending …{FAKE_KEY[-4:]}."
    )
    # servers are kept apart
    assert (await run(beta, "status")).startswith("No API key is set for this server")
    assert (await run(alpha, "clear")).startswith("Cleared")
    assert (await run(alpha, "clear")).startswith("No key was set")
    assert await bot.core.store.get_api_key(alpha.workspace) is None
