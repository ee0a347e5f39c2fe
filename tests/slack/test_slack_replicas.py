"""Two bot replicas on one fake Slack sharing REDIS_URL: together they keep to the workspace's
chat.update limit (no 429, no call inside a Retry-After) and to a person's question limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.settings import Settings
from tests.fakes.openai import FAKE_KEY, FakeOpenAI
from tests.fakes.slack import FakeSlack, Message
from tests.slack.slack_rig import Bot, running_bot, slack_settings

CHANNELS = ("C0GENERAL", "C0RANDOM", "C0HELP")
# Slack's chat.update limit per workspace, made short; each replica's budget believes in it.
UPDATES = (6, 1.0)
SLACK_LIMITS = {"update_limit": UPDATES, "post_limit": (5, 1.0)}


def setup_slack(fake: FakeSlack) -> None:
    fake.add_team("T1")
    fake.add_user("T1", "UALICE")  # channels come with the first message said in them


@pytest.fixture
async def replicas(
    fake_settings: Settings, fake_slack: FakeSlack, redis_url: str, tmp_path: Path
) -> AsyncIterator[list[Bot]]:
    async with AsyncExitStack() as stack:
        bots = []
        for name in ("a", "b"):
            settings = slack_settings(
                fake_settings,
                fake_slack,
                data_dir=tmp_path / name / "data",
                knowledge_dir=tmp_path / name / "knowledge",
                redis_url=SecretStr(redis_url),
                slack_update_rate=UPDATES[0],
                slack_update_window=UPDATES[1],
                questions_per_minute_per_user=3,
            )
            bot = await stack.enter_async_context(running_bot(settings, fake_slack))
            await bot.core.store.set_api_key("slack:T1", FAKE_KEY, set_by="UADMIN")
            bots.append(bot)
        yield bots


async def ask(fake: FakeSlack, bot: Bot, channel: str, text: str) -> Message:
    fake.bot_url = bot.url  # this replica gets the event
    return await fake.say("T1", channel, "UALICE", f"<@{fake.teams['T1'].bot_user_id}> {text}")


async def test_replicas_answering_in_one_workspace_keep_to_its_update_limit_together(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, replicas: list[Bot]
) -> None:
    words = [f"word{n} " for n in range(40)]
    for _ in range(len(replicas)):
        fake_openai.reply(*words, interval=0.02)
    asked = [
        (channel, await ask(fake_slack, bot, channel, "vacation?"))
        for bot, channel in zip(replicas, CHANNELS, strict=False)
    ]
    for bot in replicas:
        await bot.idle()

    for channel, question in asked:
        [answer] = fake_slack.bot_messages(channel, question.ts)
        assert all(w.strip() in answer.text for w in words)
        assert answer.buttons  # finished, with feedback
    # One replica alone meets no 429 at this pace; two sharing the budget meet none either.
    assert fake_slack.count("chat.update", status=429) == 0
    assert fake_slack.early_calls == []


async def test_a_person_s_question_limit_counts_on_every_replica(
    fake_slack: FakeSlack, replicas: list[Bot]
) -> None:
    first, second = replicas
    for n, bot in enumerate((first, second, first)):
        question = await ask(fake_slack, bot, CHANNELS[0], f"vacation {n}?")
        await bot.idle()
        [reply] = fake_slack.bot_messages(CHANNELS[0], question.ts)
        assert "Slow down" not in reply.text

    fourth = await ask(fake_slack, second, CHANNELS[0], "vacation again?")
    await second.idle()

    [refused] = fake_slack.bot_messages(CHANNELS[0], fourth.ts)
    assert refused.text.startswith("Slow down: you can ask 3 questions a minute here")
