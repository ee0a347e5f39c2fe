"""Assistant threads (the app's DM/agent view) end to end: the real bolt app over HTTP against the
fake Slack and the fake model. A new thread offers questions made from the documents' headings;
a question shows "is thinking…" until the answer comes, titles the thread and is answered in it;
a follow-up keeps the history; a failed answer still clears the status and says what happened."""

from __future__ import annotations

from tests.fakes.openai import FakeOpenAI
from tests.fakes.slack import AssistantThread, FakeSlack, Message
from tests.slack.slack_rig import Bot

USER = "UALICE"
VACATION = "How many vacation days do employees get?"  # the sample knowledge answers it


def setup_slack(fake: FakeSlack) -> None:
    fake.add_team("T1", admins=("UADMIN",))
    fake.add_user("T1", USER)


async def ask(fake: FakeSlack, thread: AssistantThread, text: str) -> Message:
    return await fake.say(
        "T1", thread.channel, USER, text, thread_ts=thread.thread_ts, channel_type="im"
    )


async def answered(fake: FakeSlack, bot: Bot, thread: AssistantThread, n: int = 1) -> list[Message]:
    """The thread's answers once `n` have ended (an ended answer carries its feedback buttons)."""
    await bot.idle()
    await fake.wait_for(
        lambda: (
            sum(1 for m in fake.bot_messages(thread.channel, thread.thread_ts) if m.buttons) >= n
        )
    )
    return fake.bot_messages(thread.channel, thread.thread_ts)


def calls_in(fake: FakeSlack, thread: AssistantThread) -> list[str]:
    """The Web API calls made about the thread, in order (status calls with their status)."""
    found = []
    for call in fake.calls:
        args = call.args
        if call.method == "assistant.threads.setStatus":
            where = (args.get("channel_id"), args.get("thread_ts"))
            name = f"setStatus:{args.get('status')}"
        else:
            where = (args.get("channel") or args.get("channel_id"), args.get("thread_ts"))
            name = call.method
        if where == (thread.channel, thread.thread_ts):
            found.append(name)
    return found


async def test_a_new_thread_offers_questions_made_from_the_documents(
    fake_slack: FakeSlack, bot: Bot
) -> None:
    thread = await fake_slack.start_assistant_thread("T1", USER)
    await bot.idle()
    await fake_slack.wait_for(lambda: bool(thread.prompts))

    assert thread.prompts_title == "Try asking"
    assert thread.prompts == [
        {
            "title": "What should I know about expense reports?",
            "message": "What should I know about expense reports?",
        },
        {
            "title": "What should I know about vacation policy?",
            "message": "What should I know about vacation policy?",
        },
    ]

    # A new document is suggested in the next thread.
    (bot.settings.knowledge_dir / "relay.md").write_text("# Installing the relay\n\nRun it.\n")
    await bot.core.knowledge.refresh()
    later = await fake_slack.start_assistant_thread("T1", USER)
    await bot.idle()
    await fake_slack.wait_for(lambda: bool(later.prompts))
    assert [p["message"] for p in later.prompts] == [
        "What should I know about expense reports?",
        "How do I install the relay?",
        "What should I know about vacation policy?",
    ]


async def test_a_question_shows_thinking_then_the_answer_in_the_thread_and_a_title(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    thread = await fake_slack.start_assistant_thread("T1", USER)
    fake_openai.reply("Employees get ", "25 days ", "of paid vacation ", "per year [1].")
    await ask(fake_slack, thread, VACATION)

    [answer] = await answered(fake_slack, bot, thread)

    assert "25 days of paid vacation per year" in answer.text
    assert answer.thread_ts == thread.thread_ts
    assert thread.statuses[0] == "is thinking…"
    assert thread.loading_messages[0]  # what it is doing, shown in turn under the status
    assert thread.status == ""  # cleared: nothing says "thinking" under a finished answer
    assert thread.titles == [VACATION]
    calls = calls_in(fake_slack, thread)
    writes = [i for i, name in enumerate(calls) if name.startswith("chat.")]
    # The status shows the wait: it comes before the answer's first message (no placeholder
    # that would clear it at once), and it is cleared once the answer has ended.
    assert calls.index("setStatus:is thinking…") < writes[0]
    assert calls[-1] == "setStatus:"
    assert "Thinking" not in answer.history[0]  # its first text was the answer's


async def test_a_follow_up_in_the_thread_is_answered_with_its_history(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    thread = await fake_slack.start_assistant_thread("T1", USER)
    fake_openai.reply("Employees get 25 days per year [1].")
    await ask(fake_slack, thread, VACATION)
    await answered(fake_slack, bot, thread)

    fake_openai.reply("How do employees request vacation?")  # the follow-up, made standalone
    fake_openai.reply("Request them in the HR portal [1].")
    await ask(fake_slack, thread, "And how do I request them?")
    answers = await answered(fake_slack, bot, thread, n=2)

    assert "HR portal" in answers[1].text
    sent = [m["content"] for m in fake_openai.chat_requests[-1].messages]
    assert any("How many vacation days" in text for text in sent)  # the thread's history
    assert any("25 days per year" in text for text in sent)
    assert thread.titles == [VACATION]  # titled once, after its first question
    assert thread.statuses.count("is thinking…") == 2 and thread.status == ""


async def test_a_failed_answer_clears_the_status_and_says_what_happened(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    thread = await fake_slack.start_assistant_thread("T1", USER)
    fake_openai.fail(401, code="invalid_api_key")
    await ask(fake_slack, thread, VACATION)
    await bot.idle()

    [notice] = fake_slack.bot_messages(thread.channel, thread.thread_ts)
    assert "The API key was rejected" in notice.text
    assert thread.statuses[0] == "is thinking…"
    assert thread.status == "" and calls_in(fake_slack, thread)[-1] == "setStatus:"


async def test_a_redelivered_question_leaves_the_first_answer_its_status(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    thread = await fake_slack.start_assistant_thread("T1", USER)
    fake_openai.reply("Employees get 25 days per year [1].")
    asked = fake_slack.user_says(
        "T1", thread.channel, USER, VACATION, thread_ts=thread.thread_ts, channel_type="im"
    )
    [envelope] = fake_slack.events_for("T1", asked)
    assert (await fake_slack.deliver(envelope)).status == 200
    assert (await fake_slack.deliver(envelope, retry_num=1)).status == 200  # Slack retries

    [answer] = await answered(fake_slack, bot, thread)
    assert "25 days per year" in answer.text
    # One "thinking", cleared once, by the answer that was given: the retry changed nothing.
    assert calls_in(fake_slack, thread).count("setStatus:is thinking…") == 1
    assert thread.titles == [VACATION] and thread.status == ""
