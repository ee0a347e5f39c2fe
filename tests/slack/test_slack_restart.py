"""No answer is lost when the bot process stops: real `bot run` processes in Slack HTTP mode
against the fake Slack and the fake model.

A `kill -9` mid-answer leaves a journal row; the next process ends the message with the
interrupted notice and stores the question. SIGTERM drains: an answer that finishes within
SHUTDOWN_GRACE_SECONDS lands whole, one that doesn't ends with the same notice.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core import open_store
from bot.errors import INTERRUPTED
from bot.settings import Settings
from tests.bot_process import BotProcess, bot_run
from tests.fakes.openai import FAKE_KEY, FakeOpenAI
from tests.fakes.slack import SIGNING_SECRET, FakeSlack, Message
from tests.slack.slack_rig import write_knowledge

FIRST_TEXT = "The relay listens on port 7443."


def setup_slack(fake: FakeSlack) -> None:
    fake.add_team("T1")


def slack(fake_slack: FakeSlack, fake_openai: FakeOpenAI, **extra: str) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": fake_openai.base_url,
        "OPENAI_API_KEY": FAKE_KEY,
        "CHAT_MODEL": "gpt-fake-mini",
        "SLACK_API_URL": fake_slack.api_url,
        "SLACK_BOT_TOKEN": fake_slack.teams["T1"].token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        **extra,
    }


@contextlib.asynccontextmanager
async def serving(
    workdir: Path, fake_slack: FakeSlack, fake_openai: FakeOpenAI, **extra: str
) -> AsyncIterator[BotProcess]:
    async with bot_run(workdir, slack(fake_slack, fake_openai, **extra)) as bot:
        fake_slack.bot_url = bot.url
        yield bot


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    write_knowledge(tmp_path / "knowledge")
    return tmp_path


async def _answer_shown(fake: FakeSlack, question: Message, text: str) -> Message:
    def shown() -> bool:
        return any(text in m.text for m in fake.bot_messages(question.channel, question.ts))

    await fake.wait_for(shown, timeout=60)
    return fake.bot_messages(question.channel, question.ts)[-1]


async def test_an_answer_cut_off_by_kill_9_is_ended_with_a_notice_at_the_next_start(
    workdir: Path, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply(FIRST_TEXT, " Open it for TCP.", stall_after=1, stall=600)
    async with serving(workdir, fake_slack, fake_openai) as first:
        question = await fake_slack.say("T1", "C1", "U1", "<@UBOTT1> which port for the relay?")
        await _answer_shown(fake_slack, question, FIRST_TEXT)
        await first.kill()
    [message] = fake_slack.bot_messages(question.channel, question.ts)
    assert INTERRUPTED not in message.text  # the dead process could say nothing more

    async with serving(workdir, fake_slack, fake_openai) as second:
        ended = await _answer_shown(fake_slack, question, INTERRUPTED)
        # The partial answer stays readable, its "still writing" mark gone, the notice below.
        assert ended.text.startswith(FIRST_TEXT)
        assert "⏳" not in ended.text
        assert len(fake_slack.bot_messages(question.channel, question.ts)) == 1
        assert await second.stop() == 0  # a mend under way finishes before the process ends
    assert len(fake_openai.chat_requests) == 1  # the question was not answered twice

    store = await open_store(Settings(_env_file=None, data_dir=workdir / "data"))
    try:
        thread = await store.thread_messages(f"slack:T1:C1:{question.ts}")
        assert [(m.role, m.status) for m in thread] == [("user", "done"), ("assistant", "failed")]
        assert thread[0].text == "which port for the relay?"
        assert await store.answers_in_flight() == []
    finally:
        await store.close()


async def test_sigterm_lets_an_answer_in_flight_finish(
    workdir: Path, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply(FIRST_TEXT, " Open it for TCP.", stall_after=1, stall=2)
    async with serving(workdir, fake_slack, fake_openai) as bot:
        question = await fake_slack.say("T1", "C1", "U1", "<@UBOTT1> which port for the relay?")
        await _answer_shown(fake_slack, question, FIRST_TEXT)
        assert await bot.stop() == 0
    [message] = fake_slack.bot_messages(question.channel, question.ts)
    assert message.text.startswith(f"{FIRST_TEXT} Open it for TCP.")
    assert INTERRUPTED not in message.text


async def test_sigterm_ends_an_answer_that_outlasts_the_grace_with_a_notice(
    workdir: Path, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply(FIRST_TEXT, " Open it for TCP.", stall_after=1, stall=600)
    async with serving(workdir, fake_slack, fake_openai, SHUTDOWN_GRACE_SECONDS="1") as bot:
        question = await fake_slack.say("T1", "C1", "U1", "<@UBOTT1> which port for the relay?")
        await _answer_shown(fake_slack, question, FIRST_TEXT)
        assert await bot.stop() == 0
    [message] = fake_slack.bot_messages(question.channel, question.ts)
    assert message.text.startswith(FIRST_TEXT)
    assert INTERRUPTED in message.text
