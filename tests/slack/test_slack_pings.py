"""No answer pings the channel: Markdown links to `!channel`, `@U…` or `#C…` and raw `<!here>`
from the model or from a document reach Slack as text that notifies nobody, in the answer, the
sources and the keyless passages alike (issue 13, item A); in standard Markdown, a mention's `<`
is followed by an invisible word joiner (issue 15)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.settings import Settings
from tests.fakes.openai import FAKE_KEY, FakeOpenAI
from tests.fakes.slack import FakeSlack, Message
from tests.slack.slack_rig import Bot, running_bot, slack_settings

USER = "UALICE"
CHANNEL = "C0GENERAL"
QUESTION = "How many vacation days do employees get?"
# A document someone could drop into the knowledge folder: a heading and a body meant to ping.
HOSTILE_DOC = (
    "# Vacation days [for everyone](!channel)\n\n"
    "Employees get 25 days of paid vacation; <!here> tell [the boss](@U0BOSS) in "
    "[general](#C0GENERAL) and read [the policy](https://example.com/policy).\n"
)
JOINER = "\u2060"  # invisible; breaks `<!here>` for Slack, not for the reader


def setup_slack(fake: FakeSlack) -> None:
    fake.add_team("T1", admins=("UADMIN",))
    fake.add_user("T1", USER)


@pytest.fixture
async def keyless_bot(fake_settings: Settings, fake_slack: FakeSlack) -> AsyncIterator[Bot]:
    fake_settings.knowledge_dir.mkdir(parents=True, exist_ok=True)
    (fake_settings.knowledge_dir / "pings.md").write_text(HOSTILE_DOC)
    settings = slack_settings(fake_settings, fake_slack, openai_api_key=None)
    async with running_bot(settings, fake_slack) as running:
        yield running


@pytest.fixture
async def bot(keyless_bot: Bot) -> Bot:
    await keyless_bot.core.store.set_api_key("slack:T1", FAKE_KEY, set_by="UADMIN")
    return keyless_bot


async def ask(fake: FakeSlack, bot: Bot) -> Message:
    asked = await fake.say("T1", CHANNEL, USER, f"<@{fake.teams['T1'].bot_user_id}> {QUESTION}")
    await bot.idle()
    await fake.wait_for(lambda: any(m.buttons for m in fake.bot_messages(CHANNEL, asked.ts)))
    [answer] = fake.bot_messages(CHANNEL, asked.ts)
    return answer


def assert_no_ping(fake: FakeSlack) -> None:
    """Nothing any write showed (every edit, Markdown, mrkdwn fallback text) would notify."""
    assert fake.notified == []


async def test_a_model_answer_linking_to_channel_pings_nobody(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    fake_openai.reply(
        "Ask [for everyone](!channel) or <!here>, ",
        "mention [the boss](@U0BOSS) in [general](#C0GENERAL), ",
        "see [the policy](https://example.com/policy) [1][2].",
    )
    answer = await ask(fake_slack, bot)

    assert_no_ping(fake_slack)
    assert f"Ask for everyone (!channel) or <{JOINER}!here>" in answer.shown
    assert "the boss (@U0BOSS)" in answer.shown and "general (#C0GENERAL)" in answer.shown
    assert "[the policy](https://example.com/policy)" in answer.shown  # a real link still links
    # The cited document's heading, in the sources footer, is text too.
    assert "pings.md › Vacation days for everyone (!channel)" in answer.shown


async def test_keyless_passages_and_their_sources_ping_nobody(
    fake_slack: FakeSlack, keyless_bot: Bot
) -> None:
    answer = await ask(fake_slack, keyless_bot)

    assert_no_ping(fake_slack)
    assert "pings.md › Vacation days for everyone (!channel)" in answer.shown
    assert f"<{JOINER}!here> tell the boss (@U0BOSS)" in answer.shown
