"""Slack's native streaming end to end (the real slack-bolt and slack_sdk against the fake Slack
and the fake model): a direct message's answer is streamed with chat.startStream,
chat.appendStream and chat.stopStream (sources and feedback on the stop) instead of chat.update;
past the workspace's start/stop budget, or where Slack refuses to stream, answers take the
chat.update path; a stream is cut into a new message at the size and age limits with its code
fence closed and reopened; a stream Slack ended early is finished by chat.update; and an answer a
dead process left streaming is stopped and ended with the interrupted notice."""

from __future__ import annotations

import itertools
import json
import re
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from pydantic import SecretStr
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.markdown import inert
from bot.citations import sources_markdown
from bot.errors import INTERRUPTED
from bot.journal import machine
from bot.settings import Settings
from bot.store import StoredMessage
from bot.streaming.editor import MARKER, WARNING_SIGN
from tests.fakes.openai import FAKE_KEY, FakeOpenAI
from tests.fakes.slack import FakeSlack, Message
from tests.slack.slack_rig import Bot, running_bot, slack_settings

VACATION = "How many vacation days do employees get?"
WORDS = [f"word{n} " for n in range(40)] + ["[1]."]
STREAMED = ("chat.startStream", "chat.appendStream", "chat.stopStream")
FENCE = re.compile(r"^ {0,3}```", re.MULTILINE)
DEAD_PID = 2**22 + 1  # past Linux's highest pid_max: no process here has it


def setup_slack(fake: FakeSlack) -> None:
    fake.add_team("T1")


async def dm(fake: FakeSlack, user: str = "UALICE", question: str = VACATION) -> Message:
    return await fake.say("T1", f"D0{user}", user, question, channel_type="im")


async def stored(bot: Bot, asked: Message) -> StoredMessage:
    *_, answer = await bot.core.store.thread_messages(f"slack:T1:{asked.channel}:{asked.ts}")
    assert answer.role == "assistant"
    return answer


def shown(answer: StoredMessage) -> str:
    """What the thread must show for a stored answer: its text, then its sources, in Markdown."""
    footer = sources_markdown(answer.sources)
    return inert(f"{answer.text.rstrip()}\n\n{footer}" if footer else answer.text.rstrip())


def calls(fake: FakeSlack, asked: Message, method: str) -> int:
    return sum(
        1 for c in fake.calls if c.method == method and c.args.get("channel") == asked.channel
    )


def fences_balanced(text: str) -> bool:
    return len(FENCE.findall(text)) % 2 == 0


async def test_a_direct_message_is_streamed_natively_and_ends_as_stored(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    fake_openai.reply(*WORDS, interval=0.05)
    asked = await dm(fake_slack)
    await bot.idle()

    [answer] = fake_slack.bot_messages(asked.channel, asked.ts)
    assert answer.shown == shown(await stored(bot, asked))  # whole, exact, nothing doubled
    assert "vacation.md" in answer.shown  # the sources, on the stop
    assert answer.buttons  # and the feedback element
    assert len(answer.history) >= 3  # people saw it grow
    assert MARKER not in "".join(answer.history)  # Slack shows the stream's own progress
    assert [fake_slack.count(m) for m in STREAMED[::2]] == [1, 1]
    assert fake_slack.count("chat.appendStream") >= 1
    assert fake_slack.count("chat.update") == 0
    assert fake_slack.count("chat.postMessage") == 0


async def test_an_assistant_thread_answer_is_streamed_natively_under_its_status(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    thread = await fake_slack.start_assistant_thread("T1", "UALICE")
    fake_openai.reply(*WORDS, interval=0.05)
    await fake_slack.say(
        "T1", thread.channel, "UALICE", VACATION, thread_ts=thread.thread_ts, channel_type="im"
    )
    await bot.idle()

    [answer] = fake_slack.bot_messages(thread.channel, thread.thread_ts)
    *_, stored_answer = await bot.core.store.thread_messages(
        f"slack:T1:{thread.channel}:{thread.thread_ts}"
    )
    assert answer.shown == shown(stored_answer) and answer.buttons
    [start] = [c for c in fake_slack.calls if c.method == "chat.startStream"]
    assert start.args.get("markdown_text")  # "is thinking…" showed the wait, not an empty stream
    assert fake_slack.count("chat.stopStream") == 1 and fake_slack.count("chat.update") == 0
    assert thread.status == ""


async def test_past_the_start_and_stop_budget_answers_fall_back_to_chat_update(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    # 25 DMs in one minute; Slack starts and stops about 20 streams a minute per workspace.
    people = [f"U{n:02d}" for n in range(25)]
    for _ in people:
        fake_openai.reply(*WORDS, interval=0.02)
    asked = [await dm(fake_slack, person) for person in people]
    await bot.idle()

    streamed = {q.ts for q in asked if calls(fake_slack, q, "chat.startStream")}
    edited = {q.ts for q in asked if calls(fake_slack, q, "chat.update")}
    assert len(streamed) == bot.settings.slack_stream_rate - 2  # two kept for rotations
    assert edited | streamed == {q.ts for q in asked} and not edited & streamed
    for question in asked:
        [answer] = fake_slack.bot_messages(question.channel, question.ts)
        assert answer.shown == shown(await stored(bot, question))
        assert answer.buttons
    assert not [c for c in fake_slack.calls if c.status == 429]


async def test_a_workspace_whose_slack_refuses_to_stream_gets_chat_update(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    fake_slack.stream_refusal = "not_allowed_token_type"
    fake_openai.reply(*WORDS, interval=0.02)
    fake_openai.reply(*WORDS, interval=0.02)
    first = await dm(fake_slack, "UALICE")
    await bot.idle()
    second = await dm(fake_slack, "UBOB")
    await bot.idle()

    for asked in (first, second):
        [answer] = fake_slack.bot_messages(asked.channel, asked.ts)
        assert answer.shown == shown(await stored(bot, asked))
        assert answer.buttons
    assert fake_slack.count("chat.startStream") == 1  # the refusal is remembered
    assert fake_slack.count("chat.update") >= 2


@pytest.mark.parametrize("limit", ["size", "age"])
async def test_a_long_stream_goes_on_in_a_new_message_with_its_code_fence_reopened(
    fake_settings: Settings, fake_slack: FakeSlack, fake_openai: FakeOpenAI, limit: str
) -> None:
    code = [f"    print('line {n}')\n" for n in range(60)]
    chunks = ["Here is the script:\n\n", "```python\n", "def main():\n", *code, "```\n", "Done."]
    limits = (
        {"slack_stream_rotate_chars": 600}
        if limit == "size"
        else {"slack_stream_rotate_seconds": 0.5, "slack_append_rate": 600}
    )
    settings = slack_settings(fake_settings, fake_slack, **limits)
    fake_openai.reply(*chunks, interval=0.04)
    async with running_bot(settings, fake_slack) as bot:
        await bot.core.store.set_api_key("slack:T1", FAKE_KEY, set_by="UADMIN")
        asked = await dm(fake_slack)
        await bot.idle()

    answers = fake_slack.bot_messages(asked.channel, asked.ts)
    assert len(answers) >= 2
    # Every streamed message is stopped; a last one the answer filled at once is just posted.
    starts = fake_slack.count("chat.startStream")
    assert starts == fake_slack.count("chat.stopStream") >= max(2, len(answers) - 1)
    assert fake_slack.count("chat.update") == 0
    for before, after in itertools.pairwise(answers):
        assert fences_balanced(before.shown) and fences_balanced(after.shown)
        if "print(" in before.shown and "print(" in after.shown:  # cut inside the code
            assert before.shown.rstrip().endswith("```")  # closed at the cut
            assert after.shown.startswith("```python\n")  # and reopened, same language
    joined = "".join(a.shown for a in answers)
    positions = [joined.find(line.strip()) for line in code]
    assert -1 not in positions and positions == sorted(positions)  # all of it, once, in order
    assert all(joined.count(line.strip()) == 1 for line in code)
    assert answers[-1].buttons and not any(a.buttons for a in answers[:-1])


async def test_a_stream_slack_ended_early_is_finished_by_chat_update(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    fake_slack.stream_lifetime = 0.5  # Slack's five minutes, shortened
    fake_openai.reply(*WORDS, interval=0.05)
    asked = await dm(fake_slack)
    await bot.idle()

    [answer] = fake_slack.bot_messages(asked.channel, asked.ts)
    assert answer.shown == shown(await stored(bot, asked))
    assert answer.buttons
    refused = [c.error for c in fake_slack.calls if c.method in STREAMED and c.error]
    assert "message_not_in_streaming_state" in refused
    assert fake_slack.count("chat.update") >= 1


async def test_an_answer_left_streaming_by_a_dead_process_is_stopped_and_ended(
    fake_slack: FakeSlack, bot: Bot
) -> None:
    # A process streamed part of an answer into a DM, then died (kill -9): its stream is still
    # open, so chat.update on the message answers streaming_state_conflict.
    asked = fake_slack.user_says("T1", "D0UALICE", "UALICE", VACATION, channel_type="im")
    client = AsyncWebClient(token=fake_slack.teams["T1"].token, base_url=fake_slack.api_url)
    started = await client.chat_startStream(
        channel=asked.channel, thread_ts=asked.ts, markdown_text="Employees get "
    )
    ts = str(started["ts"])
    await client.chat_appendStream(channel=asked.channel, ts=ts, markdown_text="25 days ")
    store = bot.core.store
    where = {"team": "T1", "team_id": "T1", "enterprise_id": None, "org_wide": False,
             "channel": asked.channel, "thread_ts": asked.ts}  # fmt: skip
    row = await store.begin_answer(
        thread_key=f"slack:T1:{asked.channel}:{asked.ts}", workspace="slack:T1",
        question=VACATION, author="UALICE", event_id=None, platform="slack",
        address=json.dumps(where), owner=f"{machine()}:{DEAD_PID}:dead",
    )  # fmt: skip
    await store.note_messages(row, [(ts, f"Employees get 25 days {MARKER}")])

    assert await bot.core.journal.sweep() == 1

    [answer] = fake_slack.bot_messages(asked.channel, asked.ts)
    assert answer.shown == inert(f"Employees get 25 days\n\n{WARNING_SIGN} {INTERRUPTED}")
    assert not fake_slack.streaming(asked.channel, ts)
    updates = [c.error for c in fake_slack.calls if c.method == "chat.update"]
    assert updates == ["streaming_state_conflict", None]
    assert fake_slack.count("chat.stopStream") == 1


async def test_appends_failing_through_an_outage_still_end_exact(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    # An append that fails may still have landed (a timeout): the message is stopped and edited
    # to its exact text rather than appended to again.
    fake_openai.reply(*WORDS, interval=0.05)
    asked = await dm(fake_slack)
    await fake_slack.wait_for(lambda: fake_slack.count("chat.appendStream") == 1)
    fake_slack.outage("chat.appendStream", 1.5)
    await bot.idle()

    [answer] = fake_slack.bot_messages(asked.channel, asked.ts)
    assert answer.shown == shown(await stored(bot, asked))
    assert answer.buttons
    assert fake_slack.count("chat.appendStream", status=500) >= 1


async def test_429s_from_slacks_stream_windows_are_waited_out(
    fake_settings: Settings, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    # Slack allows 2 appends and 3 starts and stops a second here while the bot's budgets
    # believe in many more: the answers run into 429s, wait out each Retry-After, and end whole.
    fake_slack.stream_limits(start=(3, 1.0), stop=(3, 1.0), append=(2, 1.0))
    settings = slack_settings(
        fake_settings, fake_slack, slack_append_rate=600, slack_stream_rate=600
    )
    people = [f"U{n}" for n in range(5)]
    for _ in people:
        fake_openai.reply(*WORDS, interval=0.02)
    async with running_bot(settings, fake_slack) as bot:
        await bot.core.store.set_api_key("slack:T1", FAKE_KEY, set_by="UADMIN")
        asked = [await dm(fake_slack, person) for person in people]
        await bot.idle()
        for question in asked:
            [answer] = fake_slack.bot_messages(question.channel, question.ts)
            assert answer.shown == shown(await stored(bot, question))

    assert sum(1 for c in fake_slack.calls if c.status == 429) >= 1


async def test_replicas_on_one_redis_share_the_workspaces_stream_budget(
    fake_settings: Settings,
    fake_slack: FakeSlack,
    fake_openai: FakeOpenAI,
    redis_url: str,
    tmp_path: Path,
) -> None:
    # Slack starts 5 streams a minute in the workspace here; each replica knows it, and
    # together they admit 3 (2 kept for rotations), not 3 each.
    fake_slack.stream_limits(start=(5, 60.0), stop=(5, 60.0))
    people = [f"U{n}" for n in range(8)]
    for _ in people:
        fake_openai.reply(*WORDS, interval=0.02)
    async with AsyncExitStack() as stack:
        replicas = []
        for name in ("a", "b"):
            settings = slack_settings(
                fake_settings, fake_slack, data_dir=tmp_path / name / "data",
                knowledge_dir=tmp_path / name / "knowledge", redis_url=SecretStr(redis_url),
                slack_stream_rate=5,
            )  # fmt: skip
            replica = await stack.enter_async_context(running_bot(settings, fake_slack))
            await replica.core.store.set_api_key("slack:T1", FAKE_KEY, set_by="UADMIN")
            replicas.append(replica)
        asked = []
        for n, person in enumerate(people):
            fake_slack.bot_url = replicas[n % 2].url  # the load balancer takes turns
            asked.append(await dm(fake_slack, person))
        for replica in replicas:
            await replica.idle()
        for n, question in enumerate(asked):
            [answer] = fake_slack.bot_messages(question.channel, question.ts)
            assert answer.shown == shown(await stored(replicas[n % 2], question))

    assert len({c.args["channel"] for c in fake_slack.calls if c.method == "chat.startStream"}) == 3
    assert not [c for c in fake_slack.calls if c.status == 429]
