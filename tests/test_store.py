"""The store: migrations, history, keys at rest, event claims, concurrent writers."""

from __future__ import annotations

import asyncio
import multiprocessing
import re
import sqlite3
from pathlib import Path

import pytest

from bot.citations import Source
from bot.store import Store, migration_files
from bot.vault import Vault, load_master_key

EXPECTED_TABLES = {
    "schema_migrations",
    "conversations",
    "messages",
    "workspace_settings",
    "api_keys",
    "processed_events",
    "bot_state",
}


async def open_store(data_dir: Path) -> Store:
    return await Store.open(data_dir / "bot.db", Vault(load_master_key("test", data_dir)))


def schema(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
        ).fetchall()
    return [(t, n, s or "") for t, n, s in rows]


async def test_blank_database_gets_exactly_the_expected_schema(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    assert await store.applied_migrations() == [f.name for f in migration_files()]
    await store.close()
    tables = {name for kind, name, _ in schema(tmp_path / "bot.db") if kind == "table"}
    assert tables >= EXPECTED_TABLES
    with sqlite3.connect(tmp_path / "bot.db") as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {"role", "text", "sources", "status", "created_at", "feedback"} <= columns


async def test_migrating_twice_changes_nothing(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    before = schema(tmp_path / "bot.db")
    assert await store.migrate() == []
    await store.close()
    store = await open_store(tmp_path)
    await store.close()
    assert schema(tmp_path / "bot.db") == before


def test_migration_prefixes_are_unique_and_numbered() -> None:
    names = [f.name for f in migration_files()]
    prefixes = [name.split("_", 1)[0] for name in names]
    assert len(prefixes) == len(set(prefixes))
    assert all(re.fullmatch(r"\d{4}_[a-z0-9_]+\.sql", name) for name in names)
    assert prefixes[0] == "0001"


async def test_a_failing_migration_leaves_nothing_half_applied(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_ok.sql").write_text("CREATE TABLE a (x INTEGER);")
    (folder / "0002_bad.sql").write_text("CREATE TABLE b (x INTEGER);\nNOT SQL AT ALL;")
    vault = Vault(load_master_key("t", tmp_path))
    with pytest.raises(sqlite3.OperationalError):
        await Store.open(tmp_path / "bot.db", vault, migrations_dir=folder)
    names = {name for _, name, _ in schema(tmp_path / "bot.db")}
    assert "b" not in names and "a" not in names


async def test_history_round_trip_with_sources(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    source = Source(number=1, path="guide.md", heading="Setup", excerpt="Run make run.")
    for n in range(3):
        await store.record_exchange(
            thread_key="slack:T1:C1:1.0",
            workspace="slack:T1",
            question=f"q{n}",
            answer=f"a{n} [1]",
            sources=[source],
            status="done",
            author="U1",
        )
    messages = await store.thread_messages("slack:T1:C1:1.0", limit=4)
    assert [m.text for m in messages] == ["q1", "a1 [1]", "q2", "a2 [1]"]
    assert messages[-1].sources == [source]
    assert await store.has_conversation("slack:T1:C1:1.0")
    assert not await store.has_conversation("slack:T1:C1:2.0")
    await store.close()


async def test_feedback_is_kept_per_workspace(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    answer_id = await store.record_exchange(
        thread_key="t", workspace="slack:T1", question="q", answer="a", sources=[], status="done"
    )
    assert not await store.set_feedback(answer_id, 1, user="U9", workspace="slack:T2")
    assert await store.set_feedback(answer_id, -1, user="U1", workspace="slack:T1")
    message = await store.get_message(answer_id)
    assert message is not None and message.feedback == -1
    await store.close()


async def test_api_key_is_encrypted_at_rest(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    key = "sk-proj-SUPERSECRET-9f8e7d6c5b4a"
    await store.set_api_key("slack:T1", key, set_by="U1")
    assert await store.get_api_key("slack:T1") == key
    assert await store.get_api_key("slack:T2") is None
    await store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("bot.db*"))
    assert b"SUPERSECRET" not in raw and b"5b4a" not in raw
    store = await open_store(tmp_path)
    assert await store.delete_api_key("slack:T1")
    assert await store.get_api_key("slack:T1") is None
    await store.close()


async def test_an_event_is_claimed_once_and_an_abandoned_claim_expires(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    results = await asyncio.gather(*(store.claim_event("Ev1") for _ in range(20)))
    assert results.count(True) == 1
    assert await store.claim_event("Ev2")
    # A worker died holding Ev2: after the lease a redelivery may answer it.
    assert await store.claim_event("Ev2", lease=0.0)
    await store.finish_event("Ev2")
    assert not await store.claim_event("Ev2", lease=0.0)
    await store.close()


def _writer(data_dir: str, worker: int, results: multiprocessing.Queue[int]) -> None:
    async def work() -> int:
        store = await open_store(Path(data_dir))
        claimed = 0
        for n in range(40):
            await store.record_exchange(
                thread_key=f"t{n % 5}",
                workspace="w",
                question=f"{worker}-{n}",
                answer="a",
                sources=[],
                status="done",
            )
            claimed += await store.claim_event(f"event-{n}")
        await store.close()
        return claimed

    results.put(asyncio.run(work()))


async def test_concurrent_writers_in_several_processes(tmp_path: Path) -> None:
    await (await open_store(tmp_path)).close()
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[int] = context.Queue()
    workers = [context.Process(target=_writer, args=(str(tmp_path), w, results)) for w in range(4)]
    for process in workers:
        process.start()
    claimed = [await asyncio.to_thread(results.get, True, 120) for _ in workers]
    for process in workers:
        process.join(30)
        assert process.exitcode == 0
    # every event went to exactly one process, and no write was lost to "database is locked"
    assert sum(claimed) == 40
    with sqlite3.connect(tmp_path / "bot.db") as db:
        assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 4 * 40 * 2


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    """Another process's writer, as SQLite sees it: a connection holding the write lock."""
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")
    return other


async def test_a_write_cancelled_while_waiting_for_the_lock_leaves_the_store_writable(
    tmp_path: Path,
) -> None:
    store = await open_store(tmp_path)
    other = _hold_write_lock(tmp_path / "bot.db")
    waiting = asyncio.create_task(store.set_state("a", "1"))
    await asyncio.sleep(0.3)  # the store's BEGIN is now waiting on the busy timeout
    waiting.cancel()
    other.execute("ROLLBACK")
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # The cancelled write ran to its end instead of leaving a transaction open.
    await store.set_state("b", "2")
    assert await store.get_state("a") == "1"
    assert await store.get_state("b") == "2"
    # And the database's write lock is free for other processes.
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    other.close()
    await store.close()


async def test_a_write_cancelled_mid_transaction_is_whole_or_absent(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    for _ in range(20):
        task = asyncio.create_task(
            store.record_exchange(
                thread_key="t",
                workspace="w",
                question="q",
                answer="a",
                sources=[],
                status="done",
            )
        )
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await store.close()
    store = await open_store(tmp_path)
    messages = await store.thread_messages("t")
    # Every question has its answer: no half-written exchange.
    assert [m.role for m in messages] == ["user", "assistant"] * (len(messages) // 2)
    assert len(messages) % 2 == 0
    await store.set_state("still", "writable")
    await store.close()


async def test_reads_do_not_queue_behind_a_writer_waiting_for_the_lock(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    await store.set_state("name", "value")
    other = _hold_write_lock(tmp_path / "bot.db")
    writer = asyncio.create_task(store.set_state("name", "new"))
    await asyncio.sleep(0.3)
    # Read while the writer is still waiting for the other process's lock.
    assert await store.get_state("name") == "value"
    assert not writer.done()
    other.execute("ROLLBACK")
    other.close()
    await writer
    assert await store.get_state("name") == "new"
    await store.close()
