"""The answer journal in the core: a dead process's answer is ended with the interrupted notice
and stored once, a live process's is left alone, and a long answer keeps its event claim."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

import bot.journal as journal_module
from bot.answer import Answerer
from bot.conversation import Conversations
from bot.errors import INTERRUPTED
from bot.journal import Address, AnswerJournal
from bot.llm import LLM
from bot.settings import Settings
from bot.store import Store
from bot.streaming.editor import MARKER, Editor
from bot.surface import Surface
from tests.fakes.openai import FAKE_KEY, FakeOpenAI
from tests.fakes.surface import FakeSurface
from tests.store_backends import Backend
from tests.test_answer import FakeKnowledge, FakePassage

THREAD = "slack:T1:C1:1700000000.000100"
WORKSPACE = "slack:T1"
EVENT = "slack:T1:C1:1700000000.000100"
WHERE = Address("slack", {"channel": "C1", "thread_ts": "1700000000.000100"})


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    """On SQLite and on PostgreSQL."""
    store = await backend.open()
    yield store
    await store.close()


async def begin(journal: AnswerJournal, surface: FakeSurface) -> tuple[int, Surface]:
    row = await journal.begin(
        thread_key=THREAD, workspace=WORKSPACE, question="Which port?", author="U1",
        event_id=EVENT, address=WHERE,
    )  # fmt: skip
    return row, journal.watch(surface, row)


async def test_a_dead_processes_answer_is_ended_with_the_notice_and_stored_once(
    store: Store,
) -> None:
    platform = FakeSurface(clock=Editor().clock, latency=0)
    assert await store.claim_event(EVENT)
    dead = AnswerJournal(store)
    _, watched = await begin(dead, platform)
    first = await watched.post("_Thinking…_")
    await watched.edit(first, f"The relay listens on port 7443. {MARKER}")
    # The process dies here: no end state, no stored exchange.

    reopened: list[dict[str, object]] = []

    async def reopen(where: dict[str, object]) -> Surface:
        reopened.append(where)
        return platform

    alive = AnswerJournal(store)
    alive.mend_with("slack", reopen)
    assert await alive.sweep() == 1
    assert reopened == [WHERE.where]
    assert platform.shown[first] == f"The relay listens on port 7443.\n\n⚠️ {INTERRUPTED}"
    [question, answer] = await store.thread_messages(THREAD)
    assert (question.text, answer.status) == ("Which port?", "failed")
    assert not await store.claim_event(EVENT, lease=0)  # a redelivery isn't answered now
    assert await store.answers_in_flight() == []
    assert await alive.sweep() == 0


async def test_a_placeholder_alone_becomes_the_notice(store: Store) -> None:
    platform = FakeSurface(clock=Editor().clock, latency=0)
    _, watched = await begin(AnswerJournal(store), platform)
    first = await watched.post("_Thinking…_")

    async def reopen(where: dict[str, object]) -> Surface:
        return platform

    alive = AnswerJournal(store)
    alive.mend_with("slack", reopen)
    assert await alive.sweep() == 1
    assert platform.shown[first] == f"⚠️ {INTERRUPTED}"


async def test_another_live_machines_answer_is_left_until_it_stops_renewing(store: Store) -> None:
    await store.begin_answer(
        thread_key=THREAD, workspace=WORKSPACE, question="Which port?", author=None,
        event_id=None, platform="slack", address=json.dumps(WHERE.where),
        owner="another-host:4242:abc",
    )  # fmt: skip
    mended: list[dict[str, object]] = []

    async def reopen(where: dict[str, object]) -> None:
        mended.append(where)

    patient = AnswerJournal(store, stale_after=60)
    patient.mend_with("slack", reopen)
    assert await patient.sweep() == 0
    assert len(await store.answers_in_flight()) == 1

    await asyncio.sleep(0.05)
    hasty = AnswerJournal(store, stale_after=0.01)  # as if 60 s had passed without a renewal
    hasty.mend_with("slack", reopen)
    assert await hasty.sweep() == 1
    assert mended == [WHERE.where]


NO_SUCH_PID = 2**22 + 1  # past Linux's highest pid_max: no process here has it


@pytest.mark.parametrize("pid", [NO_SUCH_PID, os.getpid()], ids=["missing here", "ours here"])
async def test_a_live_replica_in_another_container_with_this_hostname_is_left_alone(
    store: Store, monkeypatch: pytest.MonkeyPatch, pid: int
) -> None:
    # Replicas in containers that share a hostname (host networking, a hostname set in
    # compose) number their pids apart: the other one's pid may be missing here, or ours.
    with monkeypatch.context() as other_container:
        other_container.setattr(
            journal_module, "machine", lambda: f"{socket.gethostname()}/elsewhere", raising=False
        )
        other_container.setattr(journal_module.os, "getpid", lambda: pid)
        live = AnswerJournal(store)
    platform = FakeSurface(clock=Editor().clock, latency=0)
    _, watched = await begin(live, platform)
    first = await watched.post("_Thinking…_")

    async def reopen(where: dict[str, object]) -> Surface:
        return platform

    here = AnswerJournal(store)
    here.mend_with("slack", reopen)
    assert await here.sweep() == 0  # the other replica is still writing this answer
    assert platform.shown[first] == "_Thinking…_"
    assert len(await store.answers_in_flight()) == 1


async def test_an_answer_with_no_adapter_to_reach_it_waits(store: Store) -> None:
    platform = FakeSurface(clock=Editor().clock, latency=0)
    await begin(AnswerJournal(store), platform)
    web_only = AnswerJournal(store)  # Slack is not configured in this process
    assert await web_only.sweep() == 0
    assert len(await store.answers_in_flight()) == 1


async def test_a_long_answer_keeps_its_event_claim_past_the_lease(
    fake_settings: Settings, fake_openai: FakeOpenAI, store: Store
) -> None:
    settings = fake_settings.model_copy(update={"openai_api_key": SecretStr(FAKE_KEY)})
    guide = FakePassage("relay.md", "Network", "The relay listens on port 7443.", 3)
    answerer = Answerer(settings, FakeKnowledge([guide]), store, llm=LLM(settings))
    editor = Editor()
    journal = AnswerJournal(store, heartbeat=0.05)
    journal.start()
    conversations = Conversations(settings, store, answerer, editor, journal)
    fake_openai.reply("Port ", "7443 [1].", stall_after=1, stall=30)
    surface = FakeSurface(clock=editor.clock, latency=0)
    answering = asyncio.create_task(
        conversations.reply(
            surface=surface,
            thread_key=THREAD,
            workspace=WORKSPACE,
            question="Which port?",
            event_id=EVENT,
            address=WHERE,
        )
    )
    try:
        await asyncio.sleep(0.5)  # ten renewals; the answer is still stalled
        # A redelivery with a lease far shorter than the answer: refused, the claim was renewed.
        assert not await store.claim_event(EVENT, lease=0.2)
        fake_openai.release()
        reply = await answering
        assert reply is not None and reply.status == "done"
        assert await store.answers_in_flight() == []
    finally:
        answering.cancel()
        await journal.close()
        await editor.close()
