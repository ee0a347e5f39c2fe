"""Answers in Slack as standard Markdown (`markdown_text`; a markdown block beside the feedback
buttons element at the end), 12,000 characters a message, with every mention inert; a workspace
whose Slack refuses the newer forms gets mrkdwn and 👍/👎 after one refused call (issue 15)."""

from __future__ import annotations

import logging

import pytest

from adapters.slack.markdown import JOINER, inert
from tests.fakes.openai import FakeOpenAI
from tests.fakes.slack import FakeSlack, Message
from tests.fakes.slack.markdown import notified
from tests.slack.slack_rig import Bot

CHANNEL = "C0GENERAL"
USER = "UALICE"
QUESTION = "How many vacation days do employees get?"
MARKDOWN_LIMIT = 12_000
RICH = (
    "## Vacation days\n\n"
    "| Kind | Days |\n| --- | --- |\n| Paid | 25 |\n| Sick | 10 |\n\n"
    "1. Request it\n   - in the HR portal\n   - two weeks ahead\n2. Your manager approves it\n"
)
# Every way model text or a document could try to notify someone, in Markdown's forms.
MENTIONS = (
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "@channel",
    "@here",
    "@everyone",
    "<@U0BOSS>",
    "<!subteam^S0TEAM>",
    "[the boss](<@U0BOSS>)",
    "[the boss](@U0BOSS)",
    "[all](!channel)",
    "[<!here>](https://example.com/policy)",
    "`<!channel>`",
    "```\n<@U0BOSS> <!here>\n```",
    "<https://example.com/a|<!channel>>",
    "&lt;!here&gt;",
    "[ref][boss]\n\n[boss]: @U0BOSS",
)


def setup_slack(fake: FakeSlack) -> None:
    fake.add_team("T1", admins=("UADMIN",))
    fake.add_user("T1", USER)


def paragraphs(count: int) -> list[str]:
    return [
        f"Paragraph {n}: " + "vacation rules explained in detail " * 6 + "\n\n"
        for n in range(count)
    ]


async def ask(fake: FakeSlack, bot: Bot, channel: str = CHANNEL) -> list[Message]:
    """Ask in `channel`; the bot's messages in the thread once the answer is finished."""
    asked = await fake.say("T1", channel, USER, f"<@{fake.teams['T1'].bot_user_id}> {QUESTION}")
    await bot.idle()
    await fake.wait_for(lambda: any(m.buttons for m in fake.bot_messages(channel, asked.ts)))
    return fake.bot_messages(channel, asked.ts)


def answer_calls(fake: FakeSlack) -> list[dict[str, object]]:
    return [c.args for c in fake.calls if c.method in ("chat.postMessage", "chat.update")]


def assert_in_order(shown: str, parts: list[str]) -> None:
    positions = [shown.find(part.strip()) for part in parts]
    assert -1 not in positions and positions == sorted(positions)  # all of it, in order


async def test_a_table_heading_and_nested_list_arrive_as_standard_markdown(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    fake_openai.reply(RICH[:40], RICH[40:90], RICH[90:])
    [answer] = await ask(fake_slack, bot)

    assert RICH.strip() in answer.shown  # the table, heading and nested list, intact
    calls = answer_calls(fake_slack)
    assert len(calls) >= 2  # it streamed: posted, then edited
    # Every write was Markdown: markdown_text, or at the end a markdown block with feedback.
    assert all("markdown_text" in args for args in calls[:-1])
    [block, feedback] = answer.blocks or []
    assert block["type"] == "markdown" and block["text"] == answer.shown
    assert feedback["type"] == "context_actions"
    assert [e["type"] for e in feedback["elements"]] == ["feedback_buttons"]
    assert all(c.error is None for c in fake_slack.calls)


async def test_an_answer_of_10000_characters_is_one_message(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    parts = paragraphs(44)
    assert 9_500 < sum(len(p) for p in parts) < 10_500
    fake_openai.reply(*parts)
    [answer] = await ask(fake_slack, bot)  # mrkdwn's 3,500 bytes took three
    assert_in_order(answer.shown, parts)
    assert all(len(shown) <= MARKDOWN_LIMIT for shown in answer.history)


async def test_an_answer_of_30000_characters_is_split_within_12000_each(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    parts = paragraphs(132)
    assert 29_500 < sum(len(p) for p in parts) < 30_500
    fake_openai.reply(*parts)
    answers = await ask(fake_slack, bot)

    assert len(answers) == 3  # each message nearly full
    assert all(len(shown) <= MARKDOWN_LIMIT for m in answers for shown in m.history)
    assert_in_order("\n".join(m.shown for m in answers), parts)
    assert [bool(m.buttons) for m in answers] == [False, False, True]
    # Nothing refused (a 429 from the per-channel post limit is waited out).
    assert {c.error for c in fake_slack.calls} <= {None, "ratelimited"}


@pytest.mark.parametrize("mention", MENTIONS)
def test_the_fake_would_notify_each_mention_form_and_not_once_made_inert(
    fake_slack: FakeSlack, mention: str
) -> None:
    team = fake_slack.teams["T1"]
    text = f"Ask {mention} about it."
    assert notified({"markdown_text": text}, team) != []  # what Slack would act on
    assert notified({"markdown_text": inert(text)}, team) == []


async def test_mentions_from_the_model_notify_nobody_and_read_the_same(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    fake_openai.reply(*(f"Ask {mention} about it.\n\n" for mention in MENTIONS))
    [answer] = await ask(fake_slack, bot)

    assert fake_slack.notified == []  # no write, interim or final, fallback text included
    shown = answer.shown.replace(JOINER, "")
    for kept in ("<!channel>", "@here", "`<!channel>`", "<@U0BOSS> <!here>", "&lt;!here&gt;"):
        assert kept in shown  # people still read what the model wrote
    assert "[<!here>](https://example.com/policy)" in shown  # a real link still links
    assert "Ask the boss (@U0BOSS) about it." in shown  # a link to a mention is text
    assert all("markdown_text" in args for args in answer_calls(fake_slack)[:-1])


async def test_a_workspace_refusing_markdown_gets_mrkdwn_after_one_refused_call(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    team = fake_slack.teams["T1"]
    team.markdown = team.feedback_buttons = False  # a Slack from before both
    caplog.set_level(logging.WARNING, "adapters.slack.formats")
    fake_openai.reply(RICH)
    first = await ask(fake_slack, bot, "C0FIRST")
    parts = paragraphs(36)  # three mrkdwn messages' worth
    fake_openai.reply(*(parts[:5] + [f"Ask {m} about it.\n\n" for m in MENTIONS] + parts[5:]))
    second = await ask(fake_slack, bot)

    errors = [c.error for c in fake_slack.calls if c.error]
    assert errors.count("no_text") == 1  # markdown_text ignored once, then never sent again
    assert errors.count("invalid_blocks") == 1  # the feedback element refused once
    assert [e for e in errors if e not in ("no_text", "invalid_blocks", "ratelimited")] == []
    chat = [c for c in fake_slack.calls if c.method in ("chat.postMessage", "chat.update")]
    refused = next(n for n, call in enumerate(chat) if call.error == "no_text")
    assert chat[refused + 1 :] and not any("markdown_text" in c.args for c in chat[refused + 1 :])
    assert "refused standard Markdown" in caplog.text and "no_text" in caplog.text
    assert "refused the feedback buttons element" in caplog.text
    # The answers arrive whole, as mrkdwn, within its size, with 👍/👎.
    assert "*Vacation days*" in first[0].shown and "◦ in the HR portal" in first[0].shown
    assert len(second) >= 3 and all(len(m.text.encode()) <= 4000 for m in second)
    assert_in_order("\n".join(m.shown for m in second), parts)
    assert set(second[-1].buttons) == {"feedback_up", "feedback_down"}
    assert fake_slack.notified == []


async def test_without_the_feedback_element_markdown_stays_and_thumbs_store_the_vote(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    fake_slack.teams["T1"].feedback_buttons = False
    fake_openai.reply(RICH)
    [answer] = await ask(fake_slack, bot)

    assert [c.error for c in fake_slack.calls if c.error] == ["invalid_blocks"]
    assert answer.blocks is not None and answer.blocks[0] == {
        "type": "markdown",
        "text": answer.shown,
    }
    assert RICH.strip() in answer.shown
    answer_id = int(answer.buttons["feedback_up"])
    assert (await fake_slack.click("T1", answer, "feedback_up", USER)).status == 200
    await bot.idle()
    stored = await bot.core.store.get_message(answer_id)
    assert stored is not None and stored.feedback == 1


async def test_the_feedback_element_stores_a_thumbs_up(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    fake_openai.reply(RICH)
    [answer] = await ask(fake_slack, bot)
    vote, _, answer_id = answer.buttons["feedback:positive"].partition(":")
    assert vote == "good"

    assert (await fake_slack.click("T1", answer, "feedback:positive", USER)).status == 200
    await bot.idle()
    stored = await bot.core.store.get_message(int(answer_id))
    assert stored is not None and stored.feedback == 1 and "25" in stored.text
    [thanks] = fake_slack.responses
    assert thanks["response_type"] == "ephemeral" and "Thanks" in thanks["text"]
