"""DISCORD_ALLOWED_GUILDS end to end: in a server not on the list, /ask and /setkey get a private
refusal and a mention gets nothing, with no model call; listed servers are answered as before."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from adapters.discord.allowed import NOT_ALLOWED
from bot.settings import Settings
from tests.discord.discord_rig import RunningBot, Server, discord_settings, running_bot
from tests.discord.test_discord_setkey import private_reply
from tests.fakes.discord import EPHEMERAL, FakeDiscord
from tests.fakes.openai import FAKE_KEY, FakeOpenAI


@pytest.fixture
async def listed_bot(
    fake: FakeDiscord, servers: list[Server], fake_settings: Settings
) -> AsyncIterator[RunningBot]:
    """The operator's key set, and only the first server allowed."""
    settings = discord_settings(
        fake_settings,
        fake,
        openai_api_key=SecretStr(FAKE_KEY),
        discord_allowed_guilds=[servers[0].guild_id],
    )
    async with running_bot(settings, fake) as running:
        yield running


def bot_messages(fake: FakeDiscord, channel_id: str) -> list[dict[str, Any]]:
    """What the bot posted there for everyone (its private replies to commands left out)."""
    return [
        m
        for m in fake.channel_messages(channel_id)
        if m["author"]["id"] == fake.bot_id and not (m.get("flags") or 0) & EPHEMERAL
    ]


async def test_a_server_not_listed_gets_a_refusal_and_no_model_call(
    fake: FakeDiscord,
    fake_openai: FakeOpenAI,
    servers: list[Server],
    listed_bot: RunningBot,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    alpha, beta = servers

    asked = await fake.slash(beta.guild_id, beta.channel_id, beta.member, "ask", question="deploy?")
    setkey = await fake.slash(beta.guild_id, beta.channel_id, beta.admin, "setkey")
    await fake.say(beta.guild_id, beta.channel_id, beta.member, "deploy?", mention_bot=True)
    fake_openai.reply("Deploy with make release [1].")
    await fake.say(alpha.guild_id, alpha.channel_id, alpha.member, "deploy?", mention_bot=True)
    await fake.wait_for(lambda: any(m["components"] for m in bot_messages(fake, alpha.channel_id)))

    assert await private_reply(fake, asked) == NOT_ALLOWED
    assert await private_reply(fake, setkey) == NOT_ALLOWED
    assert setkey.modal is None  # no form to paste a key into
    assert bot_messages(fake, beta.channel_id) == []  # the mention was not answered
    assert [r.api_key for r in fake_openai.chat_requests] == [FAKE_KEY]  # alpha's answer only
    refused = [r for r in caplog.records if "not in DISCORD_ALLOWED_GUILDS" in r.getMessage()]
    assert len(refused) == 1 and beta.guild_id in refused[0].getMessage()  # once per server
