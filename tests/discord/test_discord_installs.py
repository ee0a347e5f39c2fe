"""User installs: /ask and "Ask about this message" are registered for server and user installs
in servers, the bot's DMs and private channels; used where the bot isn't (a DM, a server that never
added it) the answer goes through the interaction alone, in the asker's own workspace, which no
server's key pays for."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from adapters.discord.allowed import SERVERS_ONLY
from adapters.discord.commands import ASK_ABOUT
from bot.settings import Settings
from tests.discord.discord_rig import Server, discord_settings, running_bot
from tests.discord.test_discord import answer_ids, finished
from tests.fakes.discord import EPHEMERAL, MEMBER_PERMISSIONS, FakeDiscord
from tests.fakes.openai import FAKE_KEY, FakeOpenAI

SERVER_ONLY_KEY = "sk-gamma-server-key-never-used-0002"


def global_commands(fake_settings: Settings, fake: FakeDiscord, **overrides: Any) -> Settings:
    # User installs exist for global commands only (Discord ignores the fields on guild ones).
    return discord_settings(fake_settings, fake, discord_guild_ids=[], **overrides)


def channel_writes(fake: FakeDiscord) -> list[str]:
    return [
        "/".join(c.parts) for c in fake.calls if c.method == "POST" and c.parts[0] == "channels"
    ]


async def test_commands_are_registered_for_server_and_user_installs_in_every_context(
    fake: FakeDiscord, servers: list[Server], fake_settings: Settings
) -> None:
    async with running_bot(global_commands(fake_settings, fake), fake):
        synced = {command["name"]: command for command in fake.commands["global"]}
    ask, about, setkey = synced["ask"], synced[ASK_ABOUT], synced["setkey"]
    for command in (ask, about):
        assert sorted(command["integration_types"]) == [0, 1]  # server and user installs
        assert sorted(command["contexts"]) == [0, 1, 2]  # servers, the bot's DMs, other DMs
    assert about["type"] == 3  # a message command, in every message's Apps menu
    assert [(o["name"], o["type"], o.get("required", False)) for o in ask["options"]] == [
        ("question", 3, True),
        ("thread", 5, False),
    ]
    assert setkey["integration_types"] == [0] and setkey["contexts"] == [0]
    # The PUT carrying them was checked against Discord's spec (the fixture asserts no
    # violations); the fields are the spec's own, not tolerated extras.
    assert not [t for t in fake.tolerated if "integration_types" in t or "contexts" in t]


async def test_a_user_install_answers_in_a_dm_through_the_interaction_with_the_operators_key(
    fake: FakeDiscord, fake_openai: FakeOpenAI, servers: list[Server], fake_settings: Settings
) -> None:
    alpha = servers[0]
    dm = fake.add_dm(alpha.member)
    settings = global_commands(fake_settings, fake, openai_api_key=SecretStr(FAKE_KEY))
    async with running_bot(settings, fake) as bot:
        fake_openai.reply("Deploy with `make release` [1].")
        asked = await fake.slash(
            None, dm, alpha.member, "ask", question="How do I deploy?", user_install=True
        )
        [message] = await fake.wait_for(lambda: finished(fake, answer_ids(fake, asked)))
        assert message["content"].startswith("Deploy with `make release` [1].")
        assert "deploy.md" in message["content"]
        stored = await bot.core.store.thread_messages(
            f"discord:user:{alpha.member}:{dm}:{asked.id}"
        )
        assert [m.role for m in stored] == ["user", "assistant"]
        # 👍 in the DM lands on that answer.
        up = message["components"][0]["components"][0]["custom_id"]
        click = await fake.click(None, dm, alpha.member, message["id"], up, user_install=True)
        [thanks] = await fake.wait_for(lambda: click.callbacks)
        assert "Thanks" in thanks["data"]["content"]
    assert channel_writes(fake) == []  # the bot can't post in someone's DM: it didn't try
    assert [r.api_key for r in fake_openai.chat_requests] == [FAKE_KEY]


async def test_in_a_server_without_the_bot_no_server_key_pays_and_nothing_is_posted(
    fake: FakeDiscord, fake_openai: FakeOpenAI, servers: list[Server], fake_settings: Settings
) -> None:
    person = fake.add_user("gamma-member")
    gamma, channel = fake.add_guild("gamma", {person: MEMBER_PERMISSIONS}, bot_member=False)
    said = fake.store_message(channel, person, "How do we deploy to production?")
    # The operator's key serves every workspace without its own; gamma has a key stored (from
    # when the bot was there), which must not pay for a member's personal install.
    settings = global_commands(fake_settings, fake, openai_api_key=SecretStr(FAKE_KEY))
    async with running_bot(settings, fake) as bot:
        await bot.core.store.set_api_key(f"discord:{gamma}", SERVER_ONLY_KEY, set_by=person)
        fake_openai.default = lambda body: ["Run `make release` [1]."]
        asked = await fake.message_command(
            gamma, channel, person, ASK_ABOUT, said["id"], user_install=True
        )
        [message] = await fake.wait_for(lambda: finished(fake, answer_ids(fake, asked)))
        assert "make release" in message["content"]
        assert not message["flags"] & EPHEMERAL  # answered in place, for everyone there
        slash = await fake.slash(
            gamma, channel, person, "ask", question="Vacation days?", user_install=True
        )
        await fake.wait_for(lambda: finished(fake, answer_ids(fake, slash)))
        assert await bot.core.store.thread_messages(f"discord:user:{person}:{channel}:{slash.id}")
    assert channel_writes(fake) == []  # no thread, no channel message where the bot isn't
    assert {r.api_key for r in fake_openai.chat_requests} == {FAKE_KEY}


async def test_listed_servers_keep_user_installs_out_of_dms(
    fake: FakeDiscord, servers: list[Server], fake_settings: Settings
) -> None:
    alpha = servers[0]
    dm = fake.add_dm(alpha.admin)
    settings = global_commands(fake_settings, fake, discord_allowed_guilds=[alpha.guild_id])
    async with running_bot(settings, fake):
        asked = await fake.slash(
            None, dm, alpha.admin, "ask", question="How do I deploy?", user_install=True
        )
        [reply] = await fake.wait_for(lambda: asked.callbacks)
    assert reply["type"] == 4 and reply["data"]["flags"] & EPHEMERAL
    assert reply["data"]["content"] == SERVERS_ONLY
