"""Streaming into Slack under its limits, end to end: a long answer split across messages, a
model failure mid-stream, and a workspace's chat.update budget exhausted (429 + Retry-After)."""

from __future__ import annotations

import pytest

from bot.settings import Settings
from tests.fakes.openai import FAKE_KEY, FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.slack.slack_rig import Bot, running_bot, slack_settings

CHANNEL = "C0GENERAL"
VACATION = "How many vacation days do employees get?"


def setup_slack(fake: FakeSlack) -> None:
    fake.add_team("T1")


async def ask(fake: FakeSlack, bot: Bot, channel: str = CHANNEL) -> str:
    asked = await fake.say("T1", channel, "UALICE", f"<@{fake.teams['T1'].bot_user_id}> {VACATION}")
    await bot.idle()
    return asked.ts


async def test_a_long_answer_is_split_across_messages_in_the_thread(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    # In mrkdwn, 3,500 bytes a message: this workspace's Slack refuses standard Markdown, as a
    # first answer learnt (tests/slack/test_slack_markdown.py splits at Markdown's 12,000).
    fake_slack.teams["T1"].markdown = False
    fake_openai.reply("Employees get 25 days per year [1].")
    await ask(fake_slack, bot, "C0FIRST")
    paragraphs = [f"Paragraph {n}: " + "vacation rules explained in detail " * 6 for n in range(40)]
    fake_openai.reply(*(p + "\n\n" for p in paragraphs))
    assert sum(len(p) for p in paragraphs) > 2 * 3500

    thread = await ask(fake_slack, bot)
    answers = fake_slack.bot_messages(CHANNEL, thread)
    assert len(answers) >= 2
    assert all(m.thread_ts == thread for m in answers)
    assert fake_slack.count("chat.update") > 0
    assert not any(c.error == "msg_too_long" for c in fake_slack.calls)
    assert all(len(m.text.encode()) <= 4000 for m in answers)
    shown = "\n".join(m.shown for m in answers)
    positions = [shown.find(f"Paragraph {n}:") for n in range(40)]
    assert -1 not in positions and positions == sorted(positions)  # all of it, in order
    assert [bool(m.buttons) for m in answers] == [False] * (len(answers) - 1) + [True]


async def test_a_model_failure_mid_stream_leaves_a_visible_failure_without_buttons(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    fake_openai.reply("Employees get ", "25 days ", "of vacation ", "per year [1].", fail_after=2)
    thread = await ask(fake_slack, bot)
    [answer] = fake_slack.bot_messages(CHANNEL, thread)
    assert "Employees get 25 days" in answer.text  # what had arrived stays
    assert "⚠️" in answer.text  # and the failure is said, not left "thinking"
    assert "⏳" not in answer.text and "Thinking" not in answer.text
    assert answer.buttons == {}


@pytest.mark.parametrize(
    "fake_slack", [{"update_limit": (3, 1.0), "post_limit": (5, 1.0)}], indirect=True
)
async def test_429s_from_an_exhausted_update_budget_are_waited_out(
    fake_settings: Settings, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    # Slack allows 3 edits a second here while the bot's budget believes in 10: the answers in
    # two channels run into 429s, wait out each Retry-After, and still finish whole.
    settings = slack_settings(fake_settings, fake_slack, slack_update_rate=600)
    words = [f"word{n} " for n in range(60)]
    fake_openai.reply(*words, interval=0.02)
    fake_openai.reply(*words, interval=0.02)
    async with running_bot(settings, fake_slack) as bot:
        await bot.core.store.set_api_key("slack:T1", FAKE_KEY, set_by="UADMIN")
        first = await fake_slack.say("T1", CHANNEL, "UALICE", f"<@UBOTT1> {VACATION}")
        second = await fake_slack.say("T1", "C0OTHER", "UBOB", f"<@UBOTT1> {VACATION}")
        await bot.idle()

    assert fake_slack.count("chat.update", status=429) >= 1
    for channel, asked in ((CHANNEL, first), ("C0OTHER", second)):
        [answer] = fake_slack.bot_messages(channel, asked.ts)
        assert all(w.strip() in answer.text for w in words)
        assert answer.buttons  # finished, with feedback
