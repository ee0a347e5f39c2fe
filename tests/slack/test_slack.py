"""The Slack adapter end to end: the real slack-bolt app over HTTP against the fake Slack Web API
(message state, rate limits, spec checks) and the fake OpenAI endpoint.

Mentions, thread follow-ups, DMs, what is ignored, redelivery dedupe across processes, feedback.
"""

from __future__ import annotations

from bot.settings import Settings
from tests.fakes.openai import FakeOpenAI, Recorded
from tests.fakes.slack import FakeSlack
from tests.slack.slack_rig import Bot, running_bot

USER = "UALICE"
CHANNEL = "C0GENERAL"
VACATION = "How many vacation days do employees get?"  # the sample knowledge answers it


def setup_slack(fake: FakeSlack) -> None:
    fake.add_team("T1", admins=("UADMIN",))
    fake.add_user("T1", USER)


def streamed(fake: FakeOpenAI) -> list[Recorded]:
    """The answers the model was asked for (not the short follow-up rewrites)."""
    return [r for r in fake.chat_requests if r.body.get("stream")]


def mention(fake: FakeSlack, text: str, team: str = "T1") -> str:
    return f"<@{fake.teams[team].bot_user_id}> {text}"


async def answered(fake: FakeSlack, bot: Bot, channel: str, thread_ts: str, n: int = 1) -> None:
    """Wait until the thread holds `n` finished answers (the last write carries the buttons)."""
    await bot.idle()
    await fake.wait_for(
        lambda: sum(1 for m in fake.bot_messages(channel, thread_ts) if m.buttons) >= n
    )


async def test_mention_streams_the_answer_into_the_thread_with_sources_and_buttons(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    fake_openai.reply("Employees get ", "25 days ", "of paid vacation ", "per year [1].")
    asked = await fake_slack.say(
        "T1", CHANNEL, USER, mention(fake_slack, "How many vacation days do employees get?")
    )
    await answered(fake_slack, bot, CHANNEL, asked.ts)

    [answer] = fake_slack.bot_messages(CHANNEL, asked.ts)
    assert answer.thread_ts == asked.ts  # in the asker's thread, not the channel
    assert "25 days of paid vacation per year" in answer.shown
    assert "vacation.md" in answer.shown  # numbered sources close the answer
    assert len(answer.history) >= 2  # a placeholder first, then edits: it streamed
    assert set(answer.buttons) == {"feedback:positive", "feedback:negative"}
    # The model got the question without the mention.
    question = fake_openai.chat_requests[-1].messages[-1]["content"]
    assert "How many vacation days do employees get?" in question
    assert "<@" not in question


async def test_thread_follow_up_needs_no_mention_and_carries_the_history(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    fake_openai.reply("Employees get 25 days per year [1].")
    asked = await fake_slack.say("T1", CHANNEL, USER, mention(fake_slack, VACATION))
    await answered(fake_slack, bot, CHANNEL, asked.ts)

    fake_openai.reply("How do employees request vacation?")  # the follow-up, made standalone
    fake_openai.reply("Request them in the HR portal [1].")
    await fake_slack.say("T1", CHANNEL, USER, "And how do I request vacation?", thread_ts=asked.ts)
    await answered(fake_slack, bot, CHANNEL, asked.ts, n=2)

    answers = fake_slack.bot_messages(CHANNEL, asked.ts)
    assert len(answers) == 2 and "HR portal" in answers[1].shown
    sent = [m["content"] for m in streamed(fake_openai)[-1].messages]
    assert any("How many vacation days" in text for text in sent)  # history from our store
    assert any("25 days per year" in text for text in sent)
    assert fake_slack.count("conversations.replies") == 0


async def test_a_thread_the_bot_never_answered_in_is_left_alone(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    parent = await fake_slack.say("T1", CHANNEL, USER, "Lunch anyone?")
    await fake_slack.say("T1", CHANNEL, "UBOB", "Sure, 12:30?", thread_ts=parent.ts)
    await bot.idle()
    assert fake_slack.count("chat.postMessage") == 0
    assert fake_openai.chat_requests == []


async def test_a_direct_message_is_answered(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    fake_openai.reply("Submit them within 30 days [1].")
    asked = await fake_slack.say(
        "T1", "D0ALICE", USER, "When are expense reports due?", channel_type="im"
    )
    await answered(fake_slack, bot, "D0ALICE", asked.ts)
    [answer] = fake_slack.bot_messages("D0ALICE", asked.ts)
    assert "within 30 days" in answer.shown


async def test_own_messages_bots_and_edits_are_ignored(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    fake_openai.reply("Employees get 25 days per year [1].")
    asked = await fake_slack.say("T1", CHANNEL, USER, mention(fake_slack, VACATION))
    await answered(fake_slack, bot, CHANNEL, asked.ts)
    [answer] = fake_slack.bot_messages(CHANNEL, asked.ts)
    calls = len(fake_slack.calls)

    team = fake_slack.teams["T1"]
    base = {"channel": CHANNEL, "thread_ts": asked.ts, "channel_type": "channel"}
    for event in (
        # the bot's own answer, echoed back as a message event in the thread
        {"type": "message", "user": team.bot_user_id, "bot_id": team.bot_id,
         "text": answer.text, "ts": answer.ts, **base},
        {"type": "message", "subtype": "message_changed", "ts": "1700009999.000100",
         "message": {"text": "edited", "ts": asked.ts}, **base},
        {"type": "message", "subtype": "message_deleted", "ts": "1700009999.000200",
         "deleted_ts": asked.ts, **base},
        {"type": "message", "subtype": "bot_message", "bot_id": "BOTHER",
         "text": "another bot", "ts": "1700009999.000300", **base},
    ):  # fmt: skip
        response = await fake_slack.deliver(fake_slack.envelope("T1", event))
        assert response.status == 200
    await bot.idle()
    assert len(fake_slack.calls) == calls  # not one more Web API call
    assert len(fake_openai.chat_requests) == 1


async def test_a_mention_in_a_followed_thread_is_answered_once(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    """Slack sends app_mention and message for the same message: one answer, not two."""
    fake_openai.reply("Employees get 25 days per year [1].")
    asked = await fake_slack.say("T1", CHANNEL, USER, mention(fake_slack, VACATION))
    await answered(fake_slack, bot, CHANNEL, asked.ts)
    fake_openai.reply("How early must employees request vacation?")
    fake_openai.reply("Two weeks ahead [1].")
    await fake_slack.say(
        "T1", CHANNEL, USER, mention(fake_slack, "How early must I ask?"), thread_ts=asked.ts
    )
    await answered(fake_slack, bot, CHANNEL, asked.ts, n=2)
    assert len(fake_slack.bot_messages(CHANNEL, asked.ts)) == 2
    assert len(streamed(fake_openai)) == 2


async def test_a_redelivered_event_gets_no_second_answer_even_in_another_process(
    fake_settings: Settings, fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    fake_openai.reply("Employees get 25 days per year [1].")
    message = fake_slack.user_says("T1", CHANNEL, USER, mention(fake_slack, VACATION))
    [envelope, _] = fake_slack.events_for("T1", message)
    assert (await fake_slack.deliver(envelope)).status == 200
    # Slack thought the ack was late and redelivers, to this process and to a second one
    # sharing the database (a restart looks the same to the store).
    assert (await fake_slack.deliver(envelope, retry_num=1)).status == 200
    await answered(fake_slack, bot, CHANNEL, message.ts)
    async with running_bot(bot.settings, fake_slack) as second:
        assert (await fake_slack.deliver(envelope, retry_num=2)).status == 200
        await second.idle()
    await bot.idle()
    assert len(fake_slack.bot_messages(CHANNEL, message.ts)) == 1
    assert len(fake_openai.chat_requests) == 1


async def test_feedback_buttons_store_the_vote_with_the_answer(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    fake_openai.reply("Employees get 25 days per year [1].")
    asked = await fake_slack.say("T1", CHANNEL, USER, mention(fake_slack, VACATION))
    await answered(fake_slack, bot, CHANNEL, asked.ts)
    [answer] = fake_slack.bot_messages(CHANNEL, asked.ts)
    vote, _, answer_id = answer.buttons["feedback:negative"].partition(":")
    assert vote == "bad"

    response = await fake_slack.click("T1", answer, "feedback:negative", USER)
    assert response.status == 200
    await bot.idle()
    stored = await bot.core.store.get_message(int(answer_id))
    assert stored is not None and stored.feedback == -1
    assert "25 days" in stored.text
    [thanks] = fake_slack.responses
    assert thanks["response_type"] == "ephemeral" and "Thanks" in thanks["text"]


async def test_an_empty_mention_gets_a_hint_not_an_answer(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    await fake_slack.say("T1", CHANNEL, USER, mention(fake_slack, ""))
    await bot.idle()
    assert fake_slack.count("chat.postEphemeral") == 1
    assert fake_slack.count("chat.postMessage") == 0
    assert fake_openai.chat_requests == []


async def test_a_follow_up_posted_while_the_first_answer_streams_is_answered(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    fake_openai.reply("Employees get ", "25 days per year [1].", stall_after=1, stall=30.0)
    fake_openai.reply("Request vacation in the HR portal [1].")
    asked = await fake_slack.say("T1", CHANNEL, USER, mention(fake_slack, VACATION))
    await fake_slack.wait_for(lambda: len(fake_slack.bot_messages(CHANNEL, asked.ts)) == 1)
    # The first answer is streaming (its model call took the first, stalled reply) before the
    # follow-up is asked: retrieval takes a few milliseconds, so the placeholder comes sooner.
    await fake_slack.wait_for(lambda: len(streamed(fake_openai)) == 1)
    await fake_slack.say("T1", CHANNEL, USER, "And how do I request vacation?", thread_ts=asked.ts)
    await fake_slack.wait_for(lambda: len(streamed(fake_openai)) == 2)
    fake_openai.release()
    await answered(fake_slack, bot, CHANNEL, asked.ts, n=2)
    texts = [m.shown for m in fake_slack.bot_messages(CHANNEL, asked.ts)]
    assert "25 days per year" in texts[0] and "HR portal" in texts[1]


async def test_events_are_acknowledged_while_the_answer_is_still_being_written(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    fake_openai.reply("Employees get ", "25 days per year [1].", stall_after=1, stall=30.0)
    message = fake_slack.user_says("T1", CHANNEL, USER, mention(fake_slack, VACATION))
    [envelope, _] = fake_slack.events_for("T1", message)
    response = await fake_slack.deliver(envelope)  # Slack waits at most 3 s for this
    assert response.status == 200
    await fake_slack.wait_for(lambda: len(streamed(fake_openai)) == 1)
    assert not any(m.buttons for m in fake_slack.bot_messages(CHANNEL, message.ts))
    fake_openai.release()
    await answered(fake_slack, bot, CHANNEL, message.ts)
