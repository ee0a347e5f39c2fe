"""Discord sharding in one process: DISCORD_SHARD_COUNT runs every shard on an AutoShardedClient
against the fake gateway, which sends each server's events down its own shard's session only;
a bot that Discord tells to shard stops with what to set instead of reconnecting for ever."""

from __future__ import annotations

import logging

import pytest

from adapters.discord.client import DiscordBot, ShardedDiscordBot, build_discord_client
from adapters.discord.run import run_discord
from bot.core import Core
from bot.errors import ConfigError
from bot.settings import Settings
from tests.discord.discord_rig import add_servers, discord_settings, finished_reply, running_bot
from tests.fakes.discord import FakeDiscord

SHARDS = 2


async def test_one_process_runs_both_shards_and_answers_the_servers_of_each(
    fake: FakeDiscord, fake_settings: Settings
) -> None:
    alpha, beta = add_servers(fake, shards=SHARDS)
    settings = discord_settings(fake_settings, fake, discord_shard_count=SHARDS)
    async with running_bot(settings, fake):
        await fake.wait_for(lambda: fake.live_shards() == {0, 1}, timeout=60)
        asked = [
            await fake.say(s.guild_id, s.channel_id, s.member, "How do I deploy?", mention_bot=True)
            for s in (alpha, beta)
        ]
        replies = [await fake.wait_for(lambda q=q: finished_reply(fake, q)) for q in asked]

    assert sorted(p["shard"] for p in fake.identify_payloads) == [[0, SHARDS], [1, SHARDS]]
    # Each server's question went down its own shard's session only, and was answered there.
    for shard_id, question in enumerate(asked):
        assert [m["id"] for m in fake.received("MESSAGE_CREATE", shard_id)] == [question["id"]]
    assert fake.received("GUILD_CREATE", 0)[0]["id"] == alpha.guild_id
    assert fake.received("GUILD_CREATE", 1)[0]["id"] == beta.guild_id
    for reply in replies:
        assert "make release" in reply["content"]
    assert fake.command_syncs  # this process runs shard 0: it syncs the commands


async def test_the_log_tells_the_operator_to_shard_before_discord_requires_it(
    fake: FakeDiscord, fake_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    add_servers(fake)
    fake.recommended_shards = 2
    fake.identifies = 950  # restarts today: 50 session starts left
    with caplog.at_level(logging.INFO, logger="adapters.discord.shards"):
        async with running_bot(discord_settings(fake_settings, fake), fake):
            pass
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "Discord recommends 2 shards but DISCORD_SHARD_COUNT is unset: set it to at least 2" in w
        for w in warned
    )
    assert any("only 50 of 1000 Discord session starts left for 24.0 h" in w for w in warned)
    assert ("GET", "/gateway/bot", None) in fake.requests  # and its answer met the spec


async def test_a_bot_discord_requires_to_shard_stops_and_says_what_to_set(
    fake: FakeDiscord, fake_settings: Settings
) -> None:
    add_servers(fake, shards=SHARDS)
    fake.max_guilds_per_shard = 1  # two servers: Discord closes an unsharded session (4011)
    settings = discord_settings(fake_settings, fake)
    core = await Core.open(settings)
    retries: list[float] = []

    async def no_retry(seconds: float) -> None:
        retries.append(seconds)
        raise AssertionError("retried a connection Discord will refuse every time")

    try:
        with pytest.raises(ConfigError, match="set DISCORD_SHARD_COUNT"):
            await run_discord(settings, core, sleep=no_retry)
    finally:
        await core.close()
    assert retries == []
    assert fake.identifies == 1


@pytest.mark.parametrize(
    ("count", "ids", "sharded", "runs", "syncs"),
    [
        (None, [], False, None, True),  # no sharding: one connection, as before
        (1, [], False, [0], True),
        (2, [1], False, [1], False),  # one shard of several: a plain client, no command sync
        (2, [], True, [0, 1], True),  # every shard: all of them in this process
        (4, [3, 0], True, [0, 3], True),
    ],
)
async def test_the_shard_settings_choose_the_client_and_who_syncs_commands(
    fake_settings: Settings,
    count: int | None,
    ids: list[int],
    sharded: bool,
    runs: list[int] | None,
    syncs: bool,
) -> None:
    settings = fake_settings.model_copy(
        update={"discord_shard_count": count, "discord_shard_ids": ids}
    )
    core = await Core.open(settings)
    try:
        client = build_discord_client(settings, core)
    finally:
        await core.close()
    assert isinstance(client, DiscordBot)
    assert isinstance(client, ShardedDiscordBot) is sharded
    assert client.shard_count == count
    if sharded:
        assert isinstance(client, ShardedDiscordBot) and client.shard_ids == runs
    else:
        assert client.shard_id == (runs[0] if runs else None)
    assert client.plan.syncs_commands is syncs
