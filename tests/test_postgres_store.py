"""What only the shared PostgreSQL database has: replicas racing on one row, DATABASE_URL's forms,
and the bot command's answers about it (SECRET_KEY required, the password never shown)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest

from bot.cli import main
from bot.store import InFlight
from bot.store.driver import timestamp
from tests.postgres import PostgresServer
from tests.store_backends import TEST_SECRET, Backend

OLD = "2000-01-01T00:00:00.000Z"
DAY = 86_400.0


async def test_a_prune_never_deletes_a_follow_up_another_replica_is_storing(
    backend: Backend,
) -> None:
    store = await backend.open()
    await store.record_exchange(
        thread_key="t", workspace="w", question="q", answer="a", sources=[], status="done"
    )
    await backend.execute("UPDATE conversations SET created_at = ?", (OLD,))
    await backend.execute("UPDATE messages SET created_at = ?", (OLD,))
    if backend.url is None:  # SQLite: one writer at a time; the follow-up simply lands first
        await store.record_exchange(
            thread_key="t", workspace="w", question="more", answer="b", sources=[], status="done"
        )
    else:
        # Another replica is storing a follow-up in the old thread, as record_exchange does.
        replica = await asyncpg.connect(backend.url)
        follow_up = replica.transaction()
        await follow_up.start()
        thread = await replica.fetchval(
            "INSERT INTO conversations (thread_key, workspace) VALUES ('t', 'w') ON CONFLICT "
            "(thread_key) DO UPDATE SET thread_key = excluded.thread_key RETURNING id"
        )
        await replica.execute(
            "INSERT INTO messages (conversation_id, role, text) VALUES ($1, 'user', 'more'), "
            "($1, 'assistant', 'b')",
            thread,
        )
        prune = asyncio.create_task(
            store.prune(threads_before=time.time() - DAY, events_before=None, links_before=None)
        )
        await asyncio.sleep(0.3)
        assert not prune.done()  # it waits for the thread the follow-up holds
        await follow_up.commit()
        await replica.close()
        assert (await prune).conversations == 0
    assert [m.text for m in await store.thread_messages("t")] == ["q", "a", "more", "b"]
    await store.close()


async def test_replicas_adopt_a_dead_answer_once(backend: Backend) -> None:
    replicas = [await backend.open() for _ in range(4)]
    row = await replicas[0].begin_answer(
        thread_key="t", workspace="w", question="q", author=None, event_id=None,
        platform="slack", address='{"channel": "C1"}', owner="dead:1:1",
    )  # fmt: skip
    (dead,) = await replicas[0].answers_in_flight()
    assert isinstance(dead, InFlight) and dead.id == row
    adopted = await asyncio.gather(*(r.adopt_answer(dead, f"r{n}") for n, r in enumerate(replicas)))
    assert adopted.count(True) == 1
    for replica in replicas:
        await replica.close()


async def test_a_socket_directory_url_reaches_the_database(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    backend = Backend("postgres", tmp_path, postgres_url)
    name = postgres_url.rsplit("/", 1)[1]
    socket_backend = Backend("postgres", tmp_path, postgres_server.socket_url(name))
    store = await socket_backend.open()
    await store.set_state("via", "socket")
    await store.close()
    assert await backend.scalar("SELECT value FROM bot_state WHERE name = 'via'") == "socket"


def run_bot(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], **env: str
) -> tuple[int, str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if "SECRET_KEY" not in env:
        monkeypatch.delenv("SECRET_KEY", raising=False)
    status = main(["migrate"])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def with_password(url: str) -> str:
    return url.replace("postgres@", "postgres:hunter2secret@", 1)


async def test_bot_migrate_on_postgres_applies_and_names_the_database_without_its_password(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    url = with_password(postgres_url)  # trust auth: any password is accepted
    status, output = await asyncio.to_thread(
        run_bot, monkeypatch, capsys, DATABASE_URL=url, SECRET_KEY=TEST_SECRET,
        DATA_DIR=str(tmp_path),
    )  # fmt: skip
    assert status == 0
    database = postgres_url.rsplit("/", 1)[1]
    assert f"127.0.0.1:{postgres_url.rsplit(':', 1)[1].split('/')[0]}/{database}" in output
    assert "0001_initial.sql" in output
    assert "hunter2secret" not in output


def test_a_shared_database_without_secret_key_is_refused_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql://bot:hunter2secret@127.0.0.1:1/bot"
    status, output = run_bot(monkeypatch, capsys, DATABASE_URL=url, DATA_DIR=str(tmp_path))
    assert status == 1
    assert output.strip().splitlines() == [output.strip()]  # one line
    assert "SECRET_KEY" in output and "every replica" in output
    assert "hunter2secret" not in output


def test_an_unreachable_database_is_one_line_naming_host_and_database_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql://bot:hunter2secret@127.0.0.1:1/answers"
    status, output = run_bot(
        monkeypatch, capsys, DATABASE_URL=url, SECRET_KEY=TEST_SECRET, DATA_DIR=str(tmp_path)
    )
    assert status == 1
    assert output.startswith("bot: cannot connect to the database at 127.0.0.1:1/answers")
    assert len(output.strip().splitlines()) == 1
    assert "hunter2secret" not in output and "bot:hunter2" not in output


def test_a_url_that_is_not_postgresql_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status, output = run_bot(
        monkeypatch, capsys, DATABASE_URL="mysql://bot:hunter2secret@db/bot", SECRET_KEY="s"
    )
    assert status == 2
    assert "a mysql:// URL is not a PostgreSQL database" in output
    assert "hunter2secret" not in output


def test_timestamps_compare_in_time_order_as_text() -> None:
    moments = [0.0, 1.5, 59.999, 86_400.0, time.time()]
    assert sorted(timestamp(m) for m in moments) == [timestamp(m) for m in sorted(moments)]
