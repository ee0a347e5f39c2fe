"""The operator's key (OPENAI_API_KEY) is lent only as FALLBACK_KEY_SCOPE says: with `listed`,
only FALLBACK_KEY_WORKSPACES get answers written with it; with `embeddings`, it only embeds the
question. /setkey status says which key answers, and never shows any part of the operator's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from bot import prompts
from bot.settings import Settings
from tests.fakes.openai import FAKE_KEY, FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.slack.slack_rig import Bot, install, oauth_settings, running_bot

MEMBER = "UMEMBER"
VACATION = "How many vacation days do employees get?"


def setup_slack(fake: FakeSlack) -> None:
    for team in ("T1", "T2"):
        fake.add_team(team)
        fake.add_user(team, MEMBER)


@pytest.fixture
async def start(fake_settings: Settings, fake_slack: FakeSlack) -> AsyncIterator[Any]:
    """Start a bot with the operator's key and `overrides`, installed in T1 and T2."""
    running: list[Any] = []

    async def started(**overrides: Any) -> Bot:
        settings = oauth_settings(
            fake_settings, fake_slack, openai_api_key=SecretStr(FAKE_KEY), **overrides
        )
        context = running_bot(settings, fake_slack)
        bot = await context.__aenter__()
        running.append(context)
        for team in ("T1", "T2"):
            await install(fake_slack, bot, team)
        return bot

    yield started
    for context in running:
        await context.__aexit__(None, None, None)


async def ask(fake: FakeSlack, bot: Bot, team: str) -> str:
    """The final text of the answer to a question asked in `team`."""
    channel = f"C{team}"
    asked = await fake.say(team, channel, MEMBER, f"<@{fake.teams[team].bot_user_id}> {VACATION}")
    await bot.idle()
    await fake.wait_for(lambda: any(m.buttons for m in fake.bot_messages(channel, asked.ts)))
    return fake.bot_messages(channel, asked.ts)[0].text


async def status(fake: FakeSlack, bot: Bot, team: str) -> str:
    """What /setkey alone tells a member (not an admin: no form) of `team`."""
    before = len(fake.responses)
    assert (await fake.command(team, MEMBER, "")).status == 200
    await bot.idle()
    await fake.wait_for(lambda: len(fake.responses) > before)
    return str(fake.responses[-1]["text"])


async def test_listed_scope_writes_answers_with_the_operators_key_for_listed_workspaces_only(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, start: Any
) -> None:
    bot = await start(fallback_key_scope="listed", fallback_key_workspaces=["slack:T1"])

    fake_openai.reply("Employees get 25 days [1].")
    listed = await ask(fake_slack, bot, "T1")
    unlisted = await ask(fake_slack, bot, "T2")

    assert "25 days" in listed
    # One model call, for T1: T2's question never reached the endpoint with the operator's key.
    assert [r.api_key for r in fake_openai.requests] == [FAKE_KEY]
    assert unlisted.startswith(prompts.NO_KEY_INTRO[:30]) and "/setkey" in unlisted

    listed_status = await status(fake_slack, bot, "T1")
    unlisted_status = await status(fake_slack, bot, "T2")
    assert "the operator's shared key" in listed_status
    assert "quoted passages only" in unlisted_status and "operator" not in unlisted_status
    for text in (listed_status, unlisted_status):
        assert FAKE_KEY[-4:] not in text  # nothing of the operator's key is shown


async def test_embeddings_scope_only_embeds_the_question_with_the_operators_key(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, start: Any
) -> None:
    bot = await start(fallback_key_scope="embeddings", embed_provider="openai")
    embedded = len(fake_openai.embedding_requests)  # the documents, at start

    answer = await ask(fake_slack, bot, "T1")

    assert fake_openai.chat_requests == []
    [question] = fake_openai.embedding_requests[embedded:]
    assert question.api_key == FAKE_KEY and question.body["input"] == [VACATION]
    assert "25 days" in answer and "/setkey" in answer  # the passages, quoted
    assert "quoted passages only" in await status(fake_slack, bot, "T1")


async def test_the_default_scope_lends_the_key_to_every_workspace(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, start: Any
) -> None:
    bot = await start()

    for team in ("T1", "T2"):
        fake_openai.reply(f"{team}: 25 days [1].")
        assert f"{team}: 25 days" in await ask(fake_slack, bot, team)
        assert "the operator's shared key" in await status(fake_slack, bot, team)
    assert [r.api_key for r in fake_openai.chat_requests] == [FAKE_KEY, FAKE_KEY]
