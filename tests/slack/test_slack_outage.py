"""Answers in Slack through failures, end to end (the real slack-bolt and slack_sdk against the
fake Slack and the fake model endpoint): chat.update answering HTTP 500 for a while or for
longer than the retry window, the model answering 500 or 429 + Retry-After, and a burst of a
hundred answers in one workspace. Whatever happens, the thread ends showing what the store holds,
never a placeholder left thinking."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest

from adapters.slack.mrkdwn import to_mrkdwn
from bot.citations import sources_markdown
from bot.errors import ModelUnavailable, RateLimited
from bot.settings import Settings
from bot.store import StoredMessage
from bot.streaming.editor import MARKER, PLACEHOLDER
from tests.fakes.openai import FAKE_KEY, Failure, FakeOpenAI, Reply
from tests.fakes.slack import FakeSlack, Message
from tests.slack.slack_rig import Bot, running_bot, slack_settings

CHANNELS = ("C0GENERAL", "C0RANDOM", "C0HELP")
VACATION = "How many vacation days do employees get?"
WORDS = [f"word{n} " for n in range(30)] + ["[1]."]
OUTAGE_SECONDS = 5.0


def setup_slack(fake: FakeSlack) -> None:
    fake.add_team("T1")


async def ask(fake: FakeSlack, channel: str, question: str = VACATION) -> Message:
    return await fake.say("T1", channel, "UALICE", f"<@{fake.teams['T1'].bot_user_id}> {question}")


async def stored(bot: Bot, channel: str, asked: Message) -> StoredMessage:
    """The answer the store holds for the question `asked`."""
    *_, answer = await bot.core.store.thread_messages(f"slack:T1:{channel}:{asked.ts}")
    assert answer.role == "assistant"
    return answer


def shown(answer: StoredMessage) -> str:
    """What the thread must show for a stored answer: its text, then its sources, as mrkdwn."""
    footer = sources_markdown(answer.sources)
    return to_mrkdwn(f"{answer.text.rstrip()}\n\n{footer}" if footer else answer.text.rstrip())


def left_thinking(message: Message) -> bool:
    return MARKER in message.text or to_mrkdwn(PLACEHOLDER) in message.text


# -- Slack failing -----------------------------------------------------------------------------


async def test_edits_failing_with_500_for_five_seconds_still_end_with_the_whole_answer(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    for _ in CHANNELS:
        fake_openai.reply(*WORDS, interval=0.02)
    fake_slack.outage("chat.update", OUTAGE_SECONDS)
    back = time.monotonic() + OUTAGE_SECONDS
    asked = [await ask(fake_slack, channel) for channel in CHANNELS]
    await bot.idle()

    assert fake_slack.count("chat.update", status=500) >= len(CHANNELS)
    for channel, question in zip(CHANNELS, asked, strict=True):
        [message] = fake_slack.bot_messages(channel, question.ts)  # edited in place
        answer = await stored(bot, channel, question)
        assert answer.status == "done"
        assert "".join(WORDS) in answer.text
        assert message.text == shown(answer)  # the store and the thread agree
        assert message.buttons  # the final write, with feedback, landed
    assert time.monotonic() >= back  # the ends landed once Slack was back, not before


async def test_edits_failing_past_the_window_post_the_end_as_a_new_message(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    bot.core.editor.retry_window = 2.0  # Slack's own window is 30 s; the behaviour is the same
    fake_openai.reply(*WORDS, interval=0.02)
    fake_slack.outage("chat.update", 3600.0)
    question = await ask(fake_slack, CHANNELS[0])
    await bot.idle()

    stale, message = fake_slack.bot_messages(CHANNELS[0], question.ts)
    assert stale.text == to_mrkdwn(PLACEHOLDER)  # no edit ever landed in it
    assert message.thread_ts == question.ts  # the end, posted in the same thread
    answer = await stored(bot, CHANNELS[0], question)
    assert message.text == shown(answer)
    assert message.buttons
    assert fake_slack.count("chat.update", status=500) >= 2  # tried, with backoff, first


# -- the model failing -------------------------------------------------------------------------


@pytest.mark.parametrize(("failures", "answered"), [(1, True), (3, False)])
async def test_a_model_500_ends_in_a_full_answer_or_a_clear_notice(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot, failures: int, answered: bool
) -> None:
    for _ in range(failures):
        fake_openai.fail(500)
    fake_openai.reply(*WORDS)
    question = await ask(fake_slack, CHANNELS[0])
    await bot.idle()

    [message] = fake_slack.bot_messages(CHANNELS[0], question.ts)
    answer = await stored(bot, CHANNELS[0], question)
    assert not left_thinking(message)
    if answered:  # retried before the first byte
        assert (answer.status, message.text) == ("done", shown(answer))
        assert message.buttons
    else:
        assert answer.status == "failed"
        assert message.text == to_mrkdwn(f"⚠️ {ModelUnavailable.user_message}")
        assert not message.buttons


async def test_a_model_429_is_waited_out_as_its_retry_after_asks_then_answered(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    arrived: list[float] = []

    def limited(body: dict[str, Any]) -> Failure:
        arrived.append(time.monotonic())
        return Failure(429, code="rate_limit_exceeded", type="requests", retry_after=1)

    def answering(body: dict[str, Any]) -> Reply:
        arrived.append(time.monotonic())
        return Reply(chunks=WORDS)

    fake_openai.reply_with(limited)
    fake_openai.reply_with(answering)
    question = await ask(fake_slack, CHANNELS[0])
    await bot.idle()

    assert len(arrived) == 2
    assert arrived[1] - arrived[0] >= 1.0  # not a moment before Retry-After
    [message] = fake_slack.bot_messages(CHANNELS[0], question.ts)
    answer = await stored(bot, CHANNELS[0], question)
    assert (answer.status, message.text) == ("done", shown(answer))


async def test_a_model_429_asking_for_a_long_wait_ends_in_the_rate_limit_notice(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    fake_openai.fail(429, code="rate_limit_exceeded", retry_after=60)
    question = await ask(fake_slack, CHANNELS[0])
    await bot.idle()

    [message] = fake_slack.bot_messages(CHANNELS[0], question.ts)
    assert message.text == to_mrkdwn(f"⚠️ {RateLimited.user_message}")
    assert len(fake_openai.chat_requests) == 1  # told at once, not after a minute of "thinking"
    assert (await stored(bot, CHANNELS[0], question)).status == "failed"


# -- a burst -----------------------------------------------------------------------------------

BURST = 100
BURST_CHANNELS = 10
# Slack's limits and the bot's budgets, 30 times faster: chat.update 50 per 2 s per workspace,
# chat.postMessage 1 per 0.1 s per channel (Slack: 50 a minute, 1 a second).
BURST_UPDATES = (50, 2.0)
BURST_POSTS = (1, 0.1)
NUMBERED = re.compile(r"\(question (\d+)\)")


def numbered_answer(body: dict[str, Any]) -> Reply:
    """Each question's own answer, so every thread can be checked for exactly its text."""
    match = NUMBERED.search(str(body["messages"][-1]["content"]))
    assert match is not None
    n = match.group(1)
    return Reply(chunks=(f"Answer {n}: employees get ", "25 days ", "of paid vacation [1]."))


def no_question_limits() -> dict[str, int]:
    # A hundred questions a minute in one workspace is the point here, not a limit to enforce.
    limits = ("questions_per_minute_per_user", "questions_per_minute_per_workspace")
    return {name: 0 for name in limits if name in Settings.model_fields}


@pytest.mark.parametrize(
    "fake_slack", [{"update_limit": BURST_UPDATES, "post_limit": BURST_POSTS}], indirect=True
)
async def test_a_burst_of_a_hundred_answers_in_one_workspace_all_end_exactly(
    fake_settings: Settings, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    settings = slack_settings(
        fake_settings,
        fake_slack,
        slack_update_rate=BURST_UPDATES[0],
        slack_update_window=BURST_UPDATES[1],
        slack_post_rate=BURST_POSTS[0],
        slack_post_window=BURST_POSTS[1],
        **no_question_limits(),
    )
    fake_openai.default = numbered_answer
    async with running_bot(settings, fake_slack) as bot:
        await bot.core.store.set_api_key("slack:T1", FAKE_KEY, set_by="UADMIN")
        channels = [f"C0BURST{n % BURST_CHANNELS}" for n in range(BURST)]
        asked = await asyncio.gather(
            *(ask(fake_slack, channel, f"{VACATION} (question {n})") for n, channel in
              enumerate(channels))
        )  # fmt: skip
        await bot.idle()

        for n, (channel, question) in enumerate(zip(channels, asked, strict=True)):
            [message] = fake_slack.bot_messages(channel, question.ts)
            answer = await stored(bot, channel, question)
            assert answer.status == "done"
            assert answer.text.startswith(f"Answer {n}: employees get 25 days")
            assert message.text == shown(answer)
            assert message.buttons
    # No call inside a Retry-After (the fixture checks it too). A 429 itself is allowed: on a
    # loaded machine a request can reach the fake later than the budget's bound on travel time.
    assert fake_slack.early_calls == []
