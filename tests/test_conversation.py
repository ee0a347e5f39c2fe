"""Conversations.reply end to end in the core: real editor, answerer and store, fake model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.answer import Answerer
from bot.conversation import Conversations
from bot.errors import INTERRUPTED, PlatformError
from bot.llm import LLM
from bot.settings import Settings
from bot.store import Store
from bot.streaming.editor import MARKER, PLACEHOLDER, Editor
from bot.vault import Vault, load_master_key
from tests.fakes.openai import FAKE_KEY, FakeOpenAI
from tests.fakes.surface import Call, FakeSurface
from tests.test_answer import FakeKnowledge, FakePassage

THREAD = "slack:T1:C1:1700000000.000100"
WORKSPACE = "slack:T1"
GUIDE = FakePassage("setkey.md", "Who may set a key", "Only workspace admins may run /setkey.", 3)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "bot.db", Vault(load_master_key("t", tmp_path)))
    yield store
    await store.close()


@pytest.fixture
def conversations(fake_settings: Settings, store: Store) -> tuple[Conversations, Editor]:
    settings = fake_settings.model_copy(update={"openai_api_key": SecretStr(FAKE_KEY)})
    knowledge = FakeKnowledge([GUIDE])
    answerer = Answerer(settings, knowledge, store, llm=LLM(settings, retry_delays=(0.0,)))
    editor = Editor()
    return Conversations(settings, store, answerer, editor), editor


def surface(editor: Editor) -> FakeSurface:
    return FakeSurface(clock=editor.clock, latency=0.001)


async def test_a_reply_streams_stores_and_ends_with_sources_and_feedback(
    conversations: tuple[Conversations, Editor], fake_openai: FakeOpenAI, store: Store
) -> None:
    convo, editor = conversations
    fake_openai.reply("Only workspace ", "admins may set ", "the key [1].")
    sink = surface(editor)
    reply = await convo.reply(
        surface=sink, thread_key=THREAD, workspace=WORKSPACE, question="Who can set keys?"
    )
    assert reply is not None
    assert reply.status == "done"
    assert sink.calls[0].kind == "post"
    assert sink.calls[0].text.startswith(PLACEHOLDER) or "Only" in sink.calls[0].text
    final = sink.messages[-1]
    assert "Only workspace admins may set the key [1]." in final
    assert "[1] setkey.md › Who may set a key" in final
    assert MARKER not in final
    assert sink.calls[-1].final is not None
    assert sink.calls[-1].final.answer_id == reply.answer_id
    stored = await store.thread_messages(THREAD)
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[1].text == "Only workspace admins may set the key [1]."
    assert stored[1].sources[0].path == "setkey.md"


async def test_a_redelivered_event_gets_no_second_answer(
    conversations: tuple[Conversations, Editor], fake_openai: FakeOpenAI, store: Store
) -> None:
    convo, editor = conversations
    fake_openai.reply("One answer.", interval=0.05)
    sinks = [surface(editor) for _ in range(3)]
    replies = await asyncio.gather(
        *(
            convo.reply(
                surface=s, thread_key=THREAD, workspace=WORKSPACE, question="q", event_id="Ev1"
            )
            for s in sinks
        )
    )
    assert sum(r is not None for r in replies) == 1
    assert sum(bool(s.calls) for s in sinks) == 1
    assert len(fake_openai.chat_requests) == 1
    assert len(await store.thread_messages(THREAD)) == 2
    again = await convo.reply(
        surface=surface(editor),
        thread_key=THREAD,
        workspace=WORKSPACE,
        question="q",
        event_id="Ev1",
    )
    assert again is None


async def test_follow_ups_carry_the_thread_history(
    conversations: tuple[Conversations, Editor], fake_openai: FakeOpenAI
) -> None:
    convo, editor = conversations
    fake_openai.reply("Admins only [1].")
    await convo.reply(
        surface=surface(editor), thread_key=THREAD, workspace=WORKSPACE, question="Who sets keys?"
    )
    assert await convo.is_followup(THREAD)
    fake_openai.reply("Who may run /setkey?")  # the condensed question
    fake_openai.reply("Owners too [1].")
    await convo.reply(
        surface=surface(editor), thread_key=THREAD, workspace=WORKSPACE, question="And owners?"
    )
    condense = fake_openai.chat_requests[1]
    sent = " ".join(str(m.get("content")) for m in condense.messages)
    assert "Who sets keys?" in sent
    assert "Admins only [1]." in sent


async def test_a_model_failure_mid_stream_keeps_the_partial_text_and_says_so(
    conversations: tuple[Conversations, Editor], fake_openai: FakeOpenAI, store: Store
) -> None:
    convo, editor = conversations
    fake_openai.reply("Partial ", "answer ", "never finished", fail_after=2)
    sink = surface(editor)
    reply = await convo.reply(surface=sink, thread_key=THREAD, workspace=WORKSPACE, question="q")
    assert reply is not None
    assert reply.status == "failed"
    final = sink.messages[-1]
    assert "Partial answer" in final
    assert "⚠️" in final
    assert MARKER not in final
    assert PLACEHOLDER not in final
    assert sink.calls[-1].final is not None
    assert sink.calls[-1].final.answer_id is None  # no feedback buttons on a failure
    stored = await store.thread_messages(THREAD)
    assert stored[-1].status == "failed"
    assert stored[-1].text.startswith("Partial answer")


async def test_a_rejected_key_is_a_visible_failure_not_a_hang(
    conversations: tuple[Conversations, Editor], fake_openai: FakeOpenAI
) -> None:
    convo, editor = conversations
    fake_openai.fail(401)
    sink = surface(editor)
    reply = await convo.reply(surface=sink, thread_key=THREAD, workspace=WORKSPACE, question="q")
    assert reply is not None
    assert reply.status == "failed"
    assert "/setkey" in sink.messages[-1]
    assert PLACEHOLDER not in sink.messages[-1]


async def test_a_cancelled_answer_is_marked_cancelled(
    conversations: tuple[Conversations, Editor], fake_openai: FakeOpenAI, store: Store
) -> None:
    convo, editor = conversations
    fake_openai.reply("Slow ", "answer", stall_after=1, stall=30)
    sink = surface(editor)
    task = asyncio.create_task(
        convo.reply(surface=sink, thread_key=THREAD, workspace=WORKSPACE, question="q")
    )
    for _ in range(200):
        if any("Slow" in text for text in sink.shown.values()):
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    fake_openai.release()
    assert sink.messages[-1].endswith(INTERRUPTED)  # cancelled only when the bot stops
    assert MARKER not in sink.messages[-1]
    assert (await store.thread_messages(THREAD))[-1].status == "cancelled"


async def test_an_answer_whose_end_never_reaches_the_platform_is_stored_as_failed(
    conversations: tuple[Conversations, Editor], fake_openai: FakeOpenAI, store: Store
) -> None:
    convo, editor = conversations
    fake_openai.reply("Only workspace ", "admins may set ", "the key [1].")

    def refuse(call: Call) -> Exception | None:
        # The placeholder lands; then the channel is gone for every edit and post.
        first = call.kind == "post" and call.message_id == "m0"
        return None if first else PlatformError("chat.update failed: channel_not_found")

    sink = FakeSurface(clock=editor.clock, latency=0.001, refuse=refuse)
    reply = await convo.reply(
        surface=sink, thread_key=THREAD, workspace=WORKSPACE, question="Who can set keys?"
    )
    assert reply is not None and reply.status == "failed"
    assert "admins" not in " ".join(sink.messages)  # nobody saw the answer...
    [_, answer] = await store.thread_messages(THREAD)
    assert answer.status == "failed"  # ...so it is not stored as one they got
