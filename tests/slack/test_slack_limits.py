"""Questions per minute, end to end: past QUESTIONS_PER_MINUTE_PER_USER (or _PER_WORKSPACE) a
question gets a visible "slow down" reply in its thread instead of an answer, with no model call,
nothing stored, and no placeholder left thinking."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from bot.settings import Settings
from tests.fakes.openai import FAKE_KEY, FakeOpenAI
from tests.fakes.slack import FakeSlack, Message
from tests.slack.slack_rig import Bot, running_bot, slack_settings

CHANNEL = "C0GENERAL"
PEOPLE = ("UALICE", "UBOB", "UCAROL", "UDAN")
SLOW_DOWN = re.compile(r"Slow down: (.+) a minute(?: here)?; try again in (\d+) s\.")


def setup_slack(fake: FakeSlack) -> None:
    fake.add_team("T1")
    for person in PEOPLE:
        fake.add_user("T1", person)


@pytest.fixture
async def start(fake_settings: Settings, fake_slack: FakeSlack) -> AsyncIterator[object]:
    """Start the bot with these limits (the operator's key answers T1)."""
    stack: list[object] = []

    async def started(per_user: int, per_workspace: int) -> Bot:
        settings = slack_settings(
            fake_settings,
            fake_slack,
            questions_per_minute_per_user=per_user,
            questions_per_minute_per_workspace=per_workspace,
            slack_update_rate=600,  # no pacing between edits: this is about questions
        )
        context = running_bot(settings, fake_slack)
        stack.append(context)
        running = await context.__aenter__()
        await running.core.store.set_api_key("slack:T1", FAKE_KEY)
        return running

    yield started
    for context in reversed(stack):
        await context.__aexit__(None, None, None)  # type: ignore[attr-defined]


async def ask(fake: FakeSlack, bot: Bot, person: str, n: int) -> Message:
    """`person` asks question `n` in a new thread; returns the bot's finished reply there."""
    asked = await fake.say(
        "T1", CHANNEL, person, f"<@{fake.teams['T1'].bot_user_id}> vacation {n}?"
    )
    await bot.idle()

    def finished() -> bool:
        replies = fake.bot_messages(CHANNEL, asked.ts)
        return bool(replies) and (bool(replies[0].buttons) or "Slow down" in replies[0].text)

    await fake.wait_for(finished)
    [reply] = fake.bot_messages(CHANNEL, asked.ts)
    return reply


async def test_the_seventh_question_in_a_minute_gets_slow_down_and_no_model_call(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, start: object
) -> None:
    bot = await start(6, 60)  # type: ignore[operator]

    answers = [await ask(fake_slack, bot, "UALICE", n) for n in range(1, 7)]
    assert all(a.buttons for a in answers)
    assert len(fake_openai.chat_requests) == 6

    refused = await ask(fake_slack, bot, "UALICE", 7)

    said = SLOW_DOWN.fullmatch(refused.text)
    assert said is not None, refused.text
    assert said.group(1) == "you can ask 6 questions"
    assert 1 <= int(said.group(2)) <= 60
    assert refused.buttons == {}  # no answer to vote on
    assert len(fake_openai.chat_requests) == 6  # no model call for it
    # Not stored: it would feed the thread's next answer.
    assert await bot.core.store.thread_messages(f"slack:T1:{CHANNEL}:{refused.thread_ts}") == []
    answered = f"slack:T1:{CHANNEL}:{answers[0].thread_ts}"
    assert len(await bot.core.store.thread_messages(answered)) == 2
    # Someone else in the workspace is not held back by Alice's limit.
    assert (await ask(fake_slack, bot, "UBOB", 8)).buttons
    assert len(fake_openai.chat_requests) == 7


async def test_a_whole_workspace_is_held_to_its_own_limit(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, start: object
) -> None:
    bot = await start(0, 3)  # type: ignore[operator]

    for n, person in enumerate(PEOPLE[:3], start=1):
        assert (await ask(fake_slack, bot, person, n)).buttons
    refused = await ask(fake_slack, bot, PEOPLE[3], 4)

    said = SLOW_DOWN.fullmatch(refused.text)
    assert said is not None and said.group(1) == "this workspace can ask 3 questions"
    assert len(fake_openai.chat_requests) == 3
