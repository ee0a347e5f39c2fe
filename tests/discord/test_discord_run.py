"""Running the Discord bot: command sync only on change, no privileged intents, the invite URL,
backoff between connection attempts, a bad token, and modal values kept out of debug logs."""

from __future__ import annotations

import asyncio
import logging
import random
import socket

import discord
import pytest
from discord.gateway import DiscordWebSocket
from discord.http import Route
from pydantic import SecretStr

from adapters.discord.commands import ASK_ABOUT
from adapters.discord.run import (
    RESTART_BASE_SECONDS,
    RESTART_CAP_SECONDS,
    ModalValueFilter,
    restart_delay,
    run_discord,
)
from bot.core import Core
from bot.errors import ConfigError
from bot.settings import Settings
from tests.discord.discord_rig import Server, discord_settings, running_bot
from tests.fakes.discord import FakeDiscord

PRIVILEGED_INTENTS = (1 << 1) | (1 << 8) | (1 << 15)  # members, presences, message content
GUILDS, GUILD_MESSAGES = 1 << 0, 1 << 9


class Stop(Exception):
    """Ends run_discord from inside the injected sleep."""


async def test_commands_sync_at_start_only_when_the_command_set_changed(
    fake: FakeDiscord, servers: list[Server], fake_settings: Settings
) -> None:
    settings = discord_settings(fake_settings, fake)
    guilds = [s.guild_id for s in servers]
    async with running_bot(settings, fake):
        assert fake.command_syncs == guilds  # DISCORD_GUILD_IDS: per guild, instant
        assert {c["name"] for c in fake.commands[guilds[0]]} == {"ask", ASK_ABOUT, "setkey"}
    async with running_bot(settings, fake) as bot:
        assert fake.command_syncs == guilds  # same commands: no second create
        name = f"discord.commands:{fake.application_id}:guild:{guilds[1]}"
        await bot.core.store.set_state(name, "an older command set")
    async with running_bot(settings, fake):
        assert fake.command_syncs == [*guilds, guilds[1]]
    async with running_bot(discord_settings(fake_settings, fake, discord_guild_ids=[]), fake):
        # Global now, and the guild copies are emptied so nobody sees each command twice.
        assert fake.command_syncs[-3:] == ["global", *guilds]
        assert {c["name"] for c in fake.commands["global"]} == {"ask", ASK_ABOUT, "setkey"}
        assert fake.commands[guilds[0]] == fake.commands[guilds[1]] == []
    async with running_bot(settings, fake):
        assert fake.command_syncs[-3:] == [*guilds, "global"]
        assert fake.commands["global"] == []
    assert fake.identifies == 5


async def test_a_refused_command_sync_does_not_stop_the_bot_and_is_retried_next_start(
    fake: FakeDiscord, servers: list[Server], fake_settings: Settings
) -> None:
    alpha, beta = servers
    settings = discord_settings(fake_settings, fake)
    fake.refuse_commands = {beta.guild_id}  # e.g. invited without applications.commands
    async with running_bot(settings, fake):
        assert fake.command_syncs == [alpha.guild_id]
        await fake.say(alpha.guild_id, alpha.channel_id, alpha.member, "deploy?", mention_bot=True)
        await fake.wait_for(
            lambda: any(m["author"]["id"] == fake.bot_id for m in fake.messages.values())
        )
    fake.refuse_commands = set()
    async with running_bot(settings, fake):
        assert fake.command_syncs == [alpha.guild_id, beta.guild_id]


async def test_a_dropped_gateway_connection_resumes_instead_of_identifying_again(
    fake: FakeDiscord, servers: list[Server], fake_settings: Settings
) -> None:
    alpha = servers[0]
    async with running_bot(discord_settings(fake_settings, fake), fake):
        await fake.drop_connection(4000)
        await fake.wait_for(lambda: fake.resumes == 1)
        await fake.say(alpha.guild_id, alpha.channel_id, alpha.member, "deploy?", mention_bot=True)
        await fake.wait_for(
            lambda: any(m["author"]["id"] == fake.bot_id for m in fake.messages.values())
        )
    assert fake.identifies == 1


async def test_identifies_without_privileged_intents_and_prints_the_invite_url(
    fake: FakeDiscord,
    servers: list[Server],
    fake_settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with running_bot(discord_settings(fake_settings, fake), fake):
        pass
    intents = fake.identify_payloads[0]["intents"]
    assert intents & PRIVILEGED_INTENTS == 0
    assert intents & GUILDS and intents & GUILD_MESSAGES
    printed = capsys.readouterr().out
    prefix = (
        f"https://discord.com/oauth2/authorize?client_id={fake.application_id}"
        "&scope=bot+applications.commands&permissions="
    )
    assert prefix in printed
    value = int(printed.split(prefix, 1)[1].split()[0])
    assert discord.Permissions(value) == discord.Permissions(
        view_channel=True,
        send_messages=True,
        send_messages_in_threads=True,
        create_public_threads=True,
        read_message_history=True,
    )
    # The REST and gateway redirection ends with the bot.
    assert Route.BASE == "https://discord.com/api/v10"
    assert str(DiscordWebSocket.DEFAULT_GATEWAY) == "wss://gateway.discord.gg/"


async def test_a_rejected_token_stops_at_once_instead_of_retrying(
    fake: FakeDiscord, servers: list[Server], fake_settings: Settings
) -> None:
    settings = discord_settings(fake_settings, fake, discord_token=SecretStr("wrong-token"))
    core = await Core.open(settings)
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    try:
        with pytest.raises(ConfigError):
            await run_discord(settings, core, sleep=sleep)
    finally:
        await core.close()
    assert sleeps == []
    assert fake.identifies == 0
    assert [p for m, p, _ in fake.requests] == ["/users/@me"]


async def test_failed_connections_back_off_instead_of_looping(fake_settings: Settings) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = fake_settings.model_copy(
        update={
            "discord_token": SecretStr("token"),
            "discord_api_url": f"http://127.0.0.1:{port}/api/v10",
            "discord_gateway_url": f"ws://127.0.0.1:{port}/gateway",
        }
    )
    core = await Core.open(settings)
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 6:
            raise Stop

    try:
        with pytest.raises(Stop):
            await asyncio.wait_for(run_discord(settings, core, sleep=sleep), 60)
    finally:
        await core.close()
    for attempt, seconds in enumerate(sleeps, start=1):
        ceiling = min(RESTART_CAP_SECONDS, RESTART_BASE_SECONDS * 2 ** (attempt - 1))
        assert ceiling / 2 <= seconds <= ceiling


def test_restart_delay_doubles_up_to_a_cap_with_jitter() -> None:
    rng = random.Random(7)
    delays = [restart_delay(n, rng) for n in range(1, 12)]
    assert all(RESTART_BASE_SECONDS / 2 <= d <= RESTART_CAP_SECONDS for d in delays)
    assert delays[-1] >= RESTART_CAP_SECONDS / 2  # capped, not growing forever
    assert len({round(d, 6) for d in delays[-3:]}) == 3  # jittered: restarts don't align


def test_modal_values_are_dropped_from_gateway_debug_records() -> None:
    secret = "typed-into-the-modal-4242"
    payload = {
        "op": 0,
        "t": "INTERACTION_CREATE",
        "d": {"type": 5, "data": {"components": [{"components": [{"value": secret}]}]}},
    }
    record = logging.LogRecord(
        "discord.gateway", logging.DEBUG, __file__, 1, "Event: %s %s", (0, payload), None
    )
    assert ModalValueFilter().filter(record)
    assert secret not in record.getMessage()
    assert "INTERACTION_CREATE" in record.getMessage()
    assert payload["d"]["data"]["components"][0]["components"][0]["value"] == secret  # type: ignore[index]

    command = {"op": 0, "t": "INTERACTION_CREATE", "d": {"type": 2, "data": {"name": "ask"}}}
    record = logging.LogRecord(
        "discord.gateway", logging.DEBUG, __file__, 1, "Event: %s", (command,), None
    )
    ModalValueFilter().filter(record)
    assert "'name': 'ask'" in record.getMessage()  # other payloads are left alone
