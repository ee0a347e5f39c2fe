"""No Discord answer is lost when the bot process stops: real `bot run` processes against the
fake Discord (REST and gateway) and the fake model.

A `kill -9` mid-answer: the next process ends the reply with the interrupted notice. SIGTERM:
an answer that finishes within SHUTDOWN_GRACE_SECONDS lands whole (discord.py used to be closed
at once, cancelling it); one that doesn't ends with the notice; a question asked meanwhile is
told to come back instead of being dropped (Discord never delivers it again).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.discord.client import RESTARTING
from bot.errors import INTERRUPTED
from tests.bot_process import BotProcess, bot_run
from tests.discord.discord_rig import KNOWLEDGE, Server
from tests.fakes.discord import FakeDiscord
from tests.fakes.openai import FAKE_KEY, FakeOpenAI

FIRST_TEXT = "Employees get 25 days of paid vacation."


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "knowledge").mkdir()
    for name, text in KNOWLEDGE.items():
        (tmp_path / "knowledge" / name).write_text(text)
    return tmp_path


@contextlib.asynccontextmanager
async def serving(
    workdir: Path, fake: FakeDiscord, fake_openai: FakeOpenAI, **extra: str
) -> AsyncIterator[BotProcess]:
    fake.ready.clear()
    settings = {
        "OPENAI_BASE_URL": fake_openai.base_url,
        "OPENAI_API_KEY": FAKE_KEY,
        "CHAT_MODEL": "gpt-fake-mini",
        "DISCORD_TOKEN": fake.token,
        "DISCORD_API_URL": fake.api_url,
        "DISCORD_GATEWAY_URL": fake.gateway_url,
        "DISCORD_GUILD_IDS": ",".join(fake.guilds),
        **extra,
    }
    async with bot_run(workdir, settings) as bot:
        await asyncio.wait_for(fake.ready.wait(), 60)
        yield bot


def replies_to(fake: FakeDiscord, question: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        m
        for m in fake.channel_messages(question["channel_id"])
        if m["author"]["id"] == fake.bot_id
        and str((m.get("message_reference") or {}).get("message_id")) == question["id"]
    ]


async def reply_showing(fake: FakeDiscord, question: dict[str, Any], text: str) -> dict[str, Any]:
    def shown() -> dict[str, Any] | None:
        return next((m for m in replies_to(fake, question) if text in m["content"]), None)

    found: dict[str, Any] = await fake.wait_for(shown, timeout=60)
    return found


async def test_an_answer_cut_off_by_kill_9_is_ended_with_a_notice_at_the_next_start(
    workdir: Path, fake: FakeDiscord, servers: list[Server], fake_openai: FakeOpenAI
) -> None:
    alpha = servers[0]
    fake_openai.reply(FIRST_TEXT, " Ask HR.", stall_after=1, stall=600)
    async with serving(workdir, fake, fake_openai) as first:
        question = await fake.say(
            alpha.guild_id, alpha.channel_id, alpha.member, "vacation days?", mention_bot=True
        )
        await reply_showing(fake, question, FIRST_TEXT)
        await first.kill()

    async with serving(workdir, fake, fake_openai) as second:
        ended = await reply_showing(fake, question, INTERRUPTED)
        assert ended["content"].startswith(FIRST_TEXT)
        assert "⏳" not in ended["content"]
        assert await second.stop() == 0  # a mend under way finishes before the process ends
    assert len(replies_to(fake, question)) == 1
    assert len(fake_openai.chat_requests) == 1


async def test_sigterm_lets_an_answer_finish_and_asks_newcomers_to_come_back(
    workdir: Path, fake: FakeDiscord, servers: list[Server], fake_openai: FakeOpenAI
) -> None:
    alpha = servers[0]
    fake_openai.reply(FIRST_TEXT, " Ask HR.", stall_after=1, stall=3)
    async with serving(workdir, fake, fake_openai) as bot:
        question = await fake.say(
            alpha.guild_id, alpha.channel_id, alpha.member, "vacation days?", mention_bot=True
        )
        await reply_showing(fake, question, FIRST_TEXT)
        bot.process.terminate()
        await asyncio.sleep(1)  # closing: the first answer still streams
        late = await fake.say(
            alpha.guild_id, alpha.channel_id, alpha.member, "and sick days?", mention_bot=True
        )
        assert await asyncio.wait_for(bot.process.wait(), 60) == 0
    [answer] = replies_to(fake, question)
    assert answer["content"].startswith(f"{FIRST_TEXT} Ask HR.")
    assert INTERRUPTED not in answer["content"]
    later = [m["content"] for m in fake.channel_messages(alpha.channel_id) if m["id"] > late["id"]]
    assert RESTARTING in later
    assert len(fake_openai.chat_requests) == 1


async def test_sigterm_ends_an_answer_that_outlasts_the_grace_with_a_notice(
    workdir: Path, fake: FakeDiscord, servers: list[Server], fake_openai: FakeOpenAI
) -> None:
    alpha = servers[0]
    fake_openai.reply(FIRST_TEXT, " Ask HR.", stall_after=1, stall=600)
    async with serving(workdir, fake, fake_openai, SHUTDOWN_GRACE_SECONDS="1") as bot:
        question = await fake.say(
            alpha.guild_id, alpha.channel_id, alpha.member, "vacation days?", mention_bot=True
        )
        await reply_showing(fake, question, FIRST_TEXT)
        assert await bot.stop() == 0
    [answer] = replies_to(fake, question)
    assert answer["content"].startswith(FIRST_TEXT)
    assert INTERRUPTED in answer["content"]
