"""Two real `bot run` replicas behind one fake Slack, deployed as for scale (issue 14): each with
its own empty DATA_DIR, both on one PostgreSQL (DATABASE_URL, the documents put there by `bot
ingest` from the operator's machine) and one Redis (REDIS_URL), the same SECRET_KEY and no
operator key. Over HTTP any replica may receive any event, its redelivery or the thread's next
message, as behind a load balancer; in Socket Mode each holds one connection.

What a workspace sees is the same whichever replica serves it: the app installed through one is
installed on both, a key set through one answers on the other, a thread goes on with its history,
and a burst of mentions each delivered to both is answered once per question within the
workspace's chat.update limit. (tests/slack/test_slack_replicas.py covers the budgets in one
process; here the replicas are separate processes sharing only the database and Redis.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.bot_process import BotProcess, bot_command, bot_run
from tests.fakes.openai import FakeOpenAI
from tests.fakes.slack import (
    APP_TOKEN,
    CLIENT_ID,
    CLIENT_SECRET,
    SIGNING_SECRET,
    FakeSlack,
    Message,
)
from tests.postgres import PostgresServer
from tests.slack.slack_rig import install_across, write_knowledge
from tests.store_backends import TEST_SECRET

ADMIN = "UADMIN"
ALICE = "UALICE"
KEY = "sk-workspace-shared-by-replicas-7c1d"
MENTION = "<@UBOTT1>"
# Slack's chat.update limit per workspace, made short so the burst meets it; both replicas are
# told the same, and the fake enforces it (429 + Retry-After) on what they send together.
UPDATES = (8, 1.0)
SLACK_LIMITS = {"update_limit": UPDATES, "post_limit": (1, 1.0)}
BURST = 20
# A channel per question: Slack takes one post a second per channel, so every placeholder goes
# out at once and the answers' edits meet the workspace's chat.update limit together.
CHANNELS = tuple(f"C0TEAM{n:02d}" for n in range(BURST))


def setup_slack(fake: FakeSlack) -> None:
    fake.add_team("T1", admins=(ADMIN,))
    fake.add_user("T1", ALICE)


@pytest.fixture(scope="module")
def ingested(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database as `bot ingest`, run on the operator's own machine, leaves it: migrated, the
    documents indexed. Each test's database is a copy of it (ingesting takes many seconds)."""
    name = f"ingested_{os.getpid()}"
    url = postgres_server.create_database(name)
    operator = tmp_path_factory.mktemp("operator")
    write_knowledge(operator / "knowledge")
    bot_command(operator, {"DATABASE_URL": url, "SECRET_KEY": TEST_SECRET}, "ingest")
    return name


@pytest.fixture
def database(postgres_server: PostgresServer, ingested: str) -> str:
    """This test's shared database: the ingested one, copied."""
    return postgres_server.create_database(template=ingested)


def replica_settings(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, database: str, redis_url: str
) -> dict[str, str]:
    """What every replica is started with: shared database, Redis and SECRET_KEY; Slack by
    OAuth (the installation lives in the database); no OPENAI_API_KEY to fall back on."""
    return {
        "DATABASE_URL": database,
        "REDIS_URL": redis_url,
        "SECRET_KEY": TEST_SECRET,
        "OPENAI_BASE_URL": fake_openai.base_url,
        "CHAT_MODEL": "gpt-fake-mini",
        "SLACK_API_URL": fake_slack.api_url,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_CLIENT_ID": CLIENT_ID,
        "SLACK_CLIENT_SECRET": CLIENT_SECRET,
        "SLACK_UPDATE_RATE": str(UPDATES[0]),
        "SLACK_UPDATE_WINDOW": str(UPDATES[1]),
        "SLACK_POST_RATE": "1",
        "SLACK_POST_WINDOW": "1",
        # The burst is one person asking many questions: the limits are not under test here.
        "QUESTIONS_PER_MINUTE_PER_USER": "0",
        "QUESTIONS_PER_MINUTE_PER_WORKSPACE": "0",
    }


@contextlib.asynccontextmanager
async def two_replicas(
    tmp_path: Path, settings: dict[str, str]
) -> AsyncIterator[tuple[BotProcess, BotProcess]]:
    """Replicas a and b started at the same moment, with no documents and no data of their
    own: what they know is in the shared database."""
    async with contextlib.AsyncExitStack() as stack:
        workdirs = [tmp_path / name for name in ("a", "b")]
        for workdir in workdirs:
            workdir.mkdir()
        a, b = await asyncio.gather(
            *(stack.enter_async_context(bot_run(w, settings)) for w in workdirs)
        )
        yield a, b


@pytest.fixture
async def replicas(
    tmp_path: Path,
    fake_slack: FakeSlack,
    fake_openai: FakeOpenAI,
    database: str,
    redis_url: str,
) -> AsyncIterator[tuple[BotProcess, BotProcess]]:
    """Both replicas over HTTP, the app installed in T1 by a browser sent to a for the install
    page and redirected back by Slack to b."""
    fake_openai.keys = {KEY}
    settings = replica_settings(fake_slack, fake_openai, database, redis_url)
    async with two_replicas(tmp_path, settings) as (a, b):
        await install_across(fake_slack, a.url, b.url, "T1")
        yield a, b


async def set_key(fake: FakeSlack, replica: BotProcess) -> None:
    """The workspace admin runs `/setkey <key>`, and the command reaches `replica`."""
    response = await fake.command("T1", ADMIN, KEY, url=replica.url)
    assert response.status == 200
    await fake.wait_for(lambda: any("…7c1d" in r["text"] for r in fake.responses), timeout=60)


async def ask(
    fake: FakeSlack,
    replica: BotProcess,
    channel: str,
    text: str,
    *,
    thread_ts: str | None = None,
) -> Message:
    """Alice writes; every event Slack sends for it reaches `replica`."""
    message = fake.user_says("T1", channel, ALICE, text, thread_ts=thread_ts)
    for envelope in fake.events_for("T1", message):
        response = await fake.deliver(envelope, url=replica.url)
        assert response.status == 200
    return message


async def answered(fake: FakeSlack, channel: str, thread_ts: str, count: int = 1) -> list[Message]:
    """The bot's messages in the thread once `count` of them are finished (feedback buttons)."""

    def done() -> bool:
        return sum(1 for m in fake.bot_messages(channel, thread_ts) if m.buttons) >= count

    await fake.wait_for(done, timeout=120)
    return fake.bot_messages(channel, thread_ts)


async def test_a_key_set_through_one_replica_answers_on_the_other(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, replicas: tuple[BotProcess, BotProcess]
) -> None:
    a, b = replicas
    await set_key(fake_slack, a)

    fake_openai.reply("Employees get 25 days per year [1].")
    question = await ask(fake_slack, b, CHANNELS[0], f"{MENTION} how many vacation days?")

    [answer] = await answered(fake_slack, CHANNELS[0], question.ts)
    assert "25 days per year" in answer.text
    [chat] = fake_openai.chat_requests
    assert chat.api_key == KEY  # the workspace's own key: the operator set none


async def test_a_thread_started_on_one_replica_goes_on_on_the_other_with_its_history(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, replicas: tuple[BotProcess, BotProcess]
) -> None:
    a, b = replicas
    await set_key(fake_slack, b)
    fake_openai.reply("The relay listens on port 7443.")
    fake_openai.reply("Is the relay's port 7443 TCP?")  # b makes the follow-up standalone
    fake_openai.reply("Yes, TCP only.")

    question = await ask(fake_slack, a, CHANNELS[0], f"{MENTION} which port for the relay?")
    await answered(fake_slack, CHANNELS[0], question.ts)
    # The thread is followed: its next message needs no mention, and this one reaches b.
    await ask(fake_slack, b, CHANNELS[0], "is that TCP?", thread_ts=question.ts)

    first, second = await answered(fake_slack, CHANNELS[0], question.ts, count=2)
    assert "port 7443" in first.text and "TCP only" in second.text
    # b's answer to the follow-up was written with a's question and answer before it.
    said = [(m["role"], m["content"]) for m in fake_openai.chat_requests[-1].messages]
    assert ("user", "which port for the relay?") in said
    assert any(role == "assistant" and "port 7443" in text for role, text in said)
    assert said[-1][0] == "user" and "is that TCP?" in said[-1][1]


async def test_a_burst_delivered_to_both_replicas_is_answered_once_per_question_within_the_limit(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, replicas: tuple[BotProcess, BotProcess]
) -> None:
    a, b = replicas
    await set_key(fake_slack, a)
    words = [f"word{n} " for n in range(40)]
    for _ in range(BURST):
        fake_openai.reply(*words, interval=0.02)

    questions = [
        fake_slack.user_says("T1", CHANNELS[n % len(CHANNELS)], ALICE, f"{MENTION} question {n}?")
        for n in range(BURST)
    ]
    deliveries = []
    for n, question in enumerate(questions):
        first, other = (a, b) if n % 2 == 0 else (b, a)
        for envelope in fake_slack.events_for("T1", question):
            # Slack thought the first delivery timed out and sends it again, here to the other.
            deliveries.append(fake_slack.deliver(envelope, url=first.url))
            deliveries.append(fake_slack.deliver(envelope, url=other.url, retry_num=1))
    assert {response.status for response in await asyncio.gather(*deliveries)} == {200}
    for question in questions:
        await answered(fake_slack, question.channel, question.ts)
    # Stopped, each replica first finishes what it started: nothing more can arrive after this.
    assert await a.stop() == 0 and await b.stop() == 0

    for question in questions:
        [answer] = fake_slack.bot_messages(question.channel, question.ts)
        assert all(word.strip() in answer.text for word in words)
    # One model call per question: the prompt ends with the question, after the passages.
    asked = [
        r.messages[-1]["content"].rpartition("Question: ")[2] for r in fake_openai.chat_requests
    ]
    assert sorted(asked) == sorted(f"question {n}?" for n in range(BURST))
    assert fake_slack.count("chat.update", status=429) == 0
    assert fake_slack.count("chat.postMessage", status=429) == 0
    assert fake_slack.early_calls == []
    assert most_in_any_window("chat.update", fake_slack, UPDATES[1]) <= UPDATES[0]


def most_in_any_window(method: str, fake: FakeSlack, window: float) -> int:
    """The most `method` calls Slack took (not refused) within any `window` seconds."""
    times = sorted(c.at for c in fake.calls if c.method == method and c.status == 200)
    return max(
        (sum(1 for t in times[i:] if t < start + window) for i, start in enumerate(times)),
        default=0,
    )


async def test_socket_mode_replicas_each_hold_a_connection_and_answer_once(
    tmp_path: Path,
    fake_slack: FakeSlack,
    fake_openai: FakeOpenAI,
    database: str,
    redis_url: str,
) -> None:
    fake_openai.keys = {KEY}
    settings = replica_settings(fake_slack, fake_openai, database, redis_url)
    for name in ("SLACK_SIGNING_SECRET", "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET"):
        del settings[name]
    settings |= {"SLACK_APP_TOKEN": APP_TOKEN, "SLACK_BOT_TOKEN": fake_slack.teams["T1"].token}
    async with two_replicas(tmp_path, settings) as (a, b):
        await fake_slack.wait_for(lambda: fake_slack.socket_connections == 2, timeout=60)

        command = fake_slack.command_payload("T1", ADMIN, KEY)
        await fake_slack.push(command, "slash_commands", connection=0)
        await fake_slack.wait_for(lambda: any("…7c1d" in r["text"] for r in fake_slack.responses))

        fake_openai.reply("Employees get 25 days per year [1].")
        question = fake_slack.user_says("T1", CHANNELS[0], ALICE, f"{MENTION} vacation days?")
        for envelope in fake_slack.events_for("T1", question):
            await fake_slack.push(envelope, connection=1)
            await fake_slack.push(envelope, connection=0, retry_attempt=1)
        await answered(fake_slack, CHANNELS[0], question.ts)
        assert await a.stop() == 0 and await b.stop() == 0

    [answer] = fake_slack.bot_messages(CHANNELS[0], question.ts)
    assert "25 days per year" in answer.text
    [chat] = fake_openai.chat_requests
    assert chat.api_key == KEY
    assert fake_slack.count("apps.connections.open") == 2
