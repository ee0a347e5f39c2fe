"""The 15-minute switch, with the minutes shortened: an /ask answer still streaming when its
interaction token nears its end goes on in a channel message. Nothing is lost, the final text
and sources land, no write is sent with the expired token, and what people read is the answer
stored."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from adapters.discord.handover import POINTER
from bot.settings import Settings
from tests.discord.discord_rig import Server, discord_settings, running_bot
from tests.discord.test_discord import buttons, set_key
from tests.fakes.discord import FakeDiscord, Interaction
from tests.fakes.openai import FakeOpenAI

POINTER_START = POINTER.split("{link}")[0]


def channel_answer(fake: FakeDiscord, channel_id: str, reply_to: str) -> list[dict[str, Any]]:
    """The bot's channel messages continuing the interaction's reply `reply_to`."""
    return [
        m
        for m in fake.channel_messages(channel_id)
        if m["author"]["id"] == fake.bot_id
        and str((m.get("message_reference") or {}).get("message_id")) == reply_to
    ]


async def ask_until_switched(
    fake: FakeDiscord, server: Server
) -> tuple[Interaction, str, list[dict[str, Any]]]:
    """/ask "How do I deploy?" in `server`; the interaction, its reply's id, and the channel
    messages the answer went on in, once the last of them carries the feedback buttons."""
    asked = await fake.slash(
        server.guild_id, server.channel_id, server.member, "ask", question="How do I deploy?"
    )
    original = await fake.wait_for(lambda: asked.original_id)
    rest = await fake.wait_for(
        lambda: (
            (found := channel_answer(fake, server.channel_id, original))
            and buttons(found[-1])
            and found
        ),
        30,
    )
    return asked, original, rest


async def test_an_answer_outliving_the_token_moves_to_a_channel_message_and_loses_nothing(
    fake: FakeDiscord, fake_openai: FakeOpenAI, servers: list[Server], fake_settings: Settings
) -> None:
    alpha = servers[0]
    fake.token_lifetime = 4.0  # Discord's 15 minutes, shortened
    settings = discord_settings(fake_settings, fake, discord_handover_seconds=1.0)
    words = [f" step{n}" for n in range(50)]
    async with running_bot(settings, fake) as bot:
        await set_key(bot, alpha)
        fake_openai.reply("Deploy with make release:", *words, " done [1].", interval=0.1)
        asked, original, rest = await ask_until_switched(fake, alpha)
        reply = fake.messages[original]["content"]
        head, pointer = reply.split(POINTER_START)
        link = f"https://discord.com/channels/{alpha.guild_id}/{alpha.channel_id}/{rest[0]['id']}"
        assert pointer.startswith(link)  # the reply ends pointing at where the answer went on
        assert head.startswith("Deploy with make release:")
        assert "⏳" not in head and not buttons(fake.messages[original])
        shown = " ".join([head, *(m["content"] for m in rest)]).split()
        stored = await bot.core.store.thread_messages(
            f"discord:{alpha.guild_id}:{alpha.channel_id}:{asked.id}"
        )
        answer = stored[1]
        assert answer.status == "done"
        # What people read, in order, is the stored answer, then its sources.
        assert shown[: len(answer.text.split())] == answer.text.split()
        assert "deploy.md" in rest[-1]["content"]
        assert buttons(rest[-1]) == [f"feedback:up:{answer.id}", f"feedback:down:{answer.id}"]
    assert fake.expired_writes == 0  # never written through the token after it expired


async def test_a_switch_inside_a_code_block_closes_it_in_the_reply_and_reopens_it_below(
    fake: FakeDiscord, fake_openai: FakeOpenAI, servers: list[Server], fake_settings: Settings
) -> None:
    alpha = servers[0]
    fake.token_lifetime = 4.0
    settings = discord_settings(fake_settings, fake, discord_handover_seconds=1.0)
    lines = [f"\nrun('make release --stage {n}')" for n in range(40)]
    async with running_bot(settings, fake) as bot:
        await set_key(bot, alpha)
        fake_openai.reply("Run this [1]:\n\n```python", *lines, "\n```\n", interval=0.1)
        _, original, rest = await ask_until_switched(fake, alpha)
    head = fake.messages[original]["content"].split(POINTER_START)[0]
    assert head.count("```") == 2  # the block the switch fell in is closed in the reply
    assert rest[0]["content"].startswith("```python\n")  # and reopened where it goes on
    shown = head + "".join(m["content"] for m in rest)
    for n in range(40):
        assert shown.count(f"run('make release --stage {n}')") == 1  # each line once, none lost
    assert fake.expired_writes == 0


async def test_a_429_on_the_switch_is_retried_and_the_switch_still_happens(
    fake: FakeDiscord, fake_openai: FakeOpenAI, servers: list[Server], fake_settings: Settings
) -> None:
    alpha = servers[0]
    fake.token_lifetime = 4.0
    refused: list[str] = []

    def admit(method: str, parts: list[str]) -> web.Response | None:
        # The first message the bot posts in the channel itself meets Discord's 429.
        if (method, parts[:1], parts[2:]) == ("POST", ["channels"], ["messages"]) and not refused:
            refused.append(parts[1])
            return fake.budget.limited(parts[1], 0.3)
        return None

    fake.admit = admit  # type: ignore[method-assign]
    settings = discord_settings(fake_settings, fake, discord_handover_seconds=1.0)
    words = [f" step{n}" for n in range(40)]
    async with running_bot(settings, fake) as bot:
        await set_key(bot, alpha)
        fake_openai.reply("Deploy:", *words, " done [1].", interval=0.1)
        _, original, rest = await ask_until_switched(fake, alpha)
    assert refused == [alpha.channel_id]
    head = fake.messages[original]["content"].split(POINTER_START)[0]
    shown = " ".join([head, *(m["content"] for m in rest)]).split()
    assert shown[: 2 + len(words)] == ["Deploy:", *(w.strip() for w in words), "done"]
    assert fake.expired_writes == 0
