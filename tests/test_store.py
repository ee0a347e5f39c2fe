"""The store, on SQLite and on PostgreSQL (the `backend` fixture): migrations, history, keys at
rest, event claims, concurrent writers; then what only SQLite has (WAL, its file, its lock)."""

from __future__ import annotations

import asyncio
import multiprocessing
import re
import sqlite3
from pathlib import Path

import asyncpg
import pytest

from bot.citations import Source
from bot.store import Store, migration_files
from bot.vault import Vault, load_master_key
from tests.store_backends import Backend

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


async def columns(backend: Backend) -> dict[str, set[str]]:
    """Every table of the backend's database with its column names."""
    if backend.kind == "sqlite":
        with sqlite3.connect(backend.path) as db:
            tables = [n for t, n, _ in schema(backend.path) if t == "table"]
            return {t: {row[1] for row in db.execute(f"PRAGMA table_info({t})")} for t in tables}
    connection = await asyncpg.connect(backend.url)
    try:
        rows = await connection.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public'"
        )
    finally:
        await connection.close()
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(row["table_name"], set()).add(row["column_name"])
    return found


async def test_blank_database_gets_exactly_the_expected_schema(backend: Backend) -> None:
    store = await backend.open()
    assert await store.applied_migrations() == [
        f.name for f in migration_files(dialect=backend.kind)
    ]
    await store.close()
    tables = await columns(backend)
    assert set(tables) >= EXPECTED_TABLES
    assert {"role", "text", "sources", "status", "created_at", "feedback"} <= tables["messages"]


async def test_both_databases_get_the_same_tables_and_columns(
    tmp_path: Path, postgres_url: str
) -> None:
    sqlite = Backend("sqlite", tmp_path, None)
    postgres = Backend("postgres", tmp_path, postgres_url)
    for backend in (sqlite, postgres):
        await (await backend.open()).close()
    sqlite_columns, postgres_columns = await columns(sqlite), await columns(postgres)
    # The shared knowledge index is PostgreSQL's alone (SQLite deployments keep it in files).
    shared = {name for name in postgres_columns if name.startswith("knowledge_")}
    assert shared == {
        f"knowledge_{t}" for t in ("versions", "current", "files", "chunks", "vectors")
    }
    assert sqlite_columns == {n: c for n, c in postgres_columns.items() if n not in shared}


async def test_migrating_twice_changes_nothing(backend: Backend) -> None:
    store = await backend.open()
    before = await columns(backend)
    applied = await store.applied_migrations()
    assert await store.migrate() == []
    await store.close()
    store = await backend.open()
    assert await store.applied_migrations() == applied
    await store.close()
    assert await columns(backend) == before


async def test_replicas_starting_together_apply_each_migration_once(backend: Backend) -> None:
    stores = await asyncio.gather(*(backend.open() for _ in range(6)))
    assert [len(await store.applied_migrations()) for store in stores] == [
        len(migration_files(dialect=backend.kind))
    ] * 6
    for store in stores:
        await store.close()


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_migration_prefixes_are_unique_and_numbered(dialect: str) -> None:
    names = [f.name for f in migration_files(dialect=dialect)]  # type: ignore[arg-type]
    prefixes = [name.split("_", 1)[0] for name in names]
    assert len(prefixes) == len(set(prefixes))
    assert all(re.fullmatch(r"\d{4}_[a-z0-9_]+\.sql", name) for name in names)
    assert prefixes[0] == "0001"


async def test_a_failing_migration_leaves_nothing_half_applied(
    backend: Backend, tmp_path: Path
) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_ok.sql").write_text("CREATE TABLE a (x INTEGER);")
    (folder / "0002_bad.sql").write_text("CREATE TABLE b (x INTEGER);\nNOT SQL AT ALL;")
    with pytest.raises((sqlite3.OperationalError, asyncpg.PostgresSyntaxError)):
        await backend.open(migrations_dir=folder)
    assert await columns(backend) == {}


async def test_history_round_trip_with_sources(backend: Backend) -> None:
    store = await backend.open()
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
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", messages[-1].created_at)
    assert await store.has_conversation("slack:T1:C1:1.0")
    assert not await store.has_conversation("slack:T1:C1:2.0")
    await store.close()


async def test_feedback_is_kept_per_workspace(backend: Backend) -> None:
    store = await backend.open()
    answer_id = await store.record_exchange(
        thread_key="t", workspace="slack:T1", question="q", answer="a", sources=[], status="done"
    )
    assert not await store.set_feedback(answer_id, 1, user="U9", workspace="slack:T2")
    assert await store.set_feedback(answer_id, -1, user="U1", workspace="slack:T1")
    message = await store.get_message(answer_id)
    assert message is not None and message.feedback == -1
    await store.close()


async def test_api_key_is_encrypted_at_rest(backend: Backend) -> None:
    store = await backend.open()
    key = "sk-proj-SUPERSECRET-9f8e7d6c5b4a"
    await store.set_api_key("slack:T1", key, set_by="U1")
    assert await store.get_api_key("slack:T1") == key
    assert await store.get_api_key("slack:T2") is None
    await store.close()
    stored = bytes(await backend.scalar("SELECT ciphertext FROM api_keys"))
    assert b"SUPERSECRET" not in stored and b"5b4a" not in stored
    if backend.kind == "sqlite":
        raw = b"".join(p.read_bytes() for p in backend.data_dir.glob("bot.db*"))
        assert b"SUPERSECRET" not in raw and b"5b4a" not in raw
    store = await backend.open()
    assert await store.delete_api_key("slack:T1")
    assert await store.get_api_key("slack:T1") is None
    await store.close()


async def test_an_event_is_claimed_once_and_an_abandoned_claim_expires(backend: Backend) -> None:
    store = await backend.open()
    results = await asyncio.gather(*(store.claim_event("Ev1") for _ in range(20)))
    assert results.count(True) == 1
    assert await store.claim_event("Ev2")
    # A worker died holding Ev2: after the lease a redelivery may answer it.
    assert await store.claim_event("Ev2", lease=0.0)
    await store.finish_event("Ev2")
    assert not await store.claim_event("Ev2", lease=0.0)
    await store.close()


async def test_replicas_claim_each_event_once(backend: Backend) -> None:
    replicas = [await backend.open() for _ in range(4)]
    claims = await asyncio.gather(
        *(replica.claim_event(f"Ev{n}") for n in range(25) for replica in replicas)
    )
    assert sum(claims) == 25
    # Ev0's claimer died long ago: of the replicas taking it over, one wins it.
    await backend.execute("UPDATE processed_events SET claimed_at = 0 WHERE event_id = 'Ev0'")
    takeovers = await asyncio.gather(*(r.claim_event("Ev0") for r in replicas))
    assert takeovers.count(True) == 1
    for replica in replicas:
        await replica.close()


def _writer(backend: Backend, worker: int, results: multiprocessing.Queue[int]) -> None:
    async def work() -> int:
        store = await backend.open()
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


async def test_concurrent_writers_in_several_processes(backend: Backend) -> None:
    await (await backend.open()).close()
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[int] = context.Queue()
    workers = [context.Process(target=_writer, args=(backend, w, results)) for w in range(4)]
    for process in workers:
        process.start()
    claimed = [await asyncio.to_thread(results.get, True, 120) for _ in workers]
    for process in workers:
        process.join(30)
        assert process.exitcode == 0
    # every event went to exactly one process, and no write was lost to "database is locked"
    assert sum(claimed) == 40
    assert await backend.scalar("SELECT count(*) FROM messages") == 4 * 40 * 2
    assert await backend.scalar("SELECT count(*) FROM conversations") == 5


async def test_a_write_cancelled_mid_transaction_is_whole_or_absent(backend: Backend) -> None:
    store = await backend.open()
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
    store = await backend.open()
    messages = await store.thread_messages("t")
    # Every question has its answer: no half-written exchange.
    assert [m.role for m in messages] == ["user", "assistant"] * (len(messages) // 2)
    assert len(messages) % 2 == 0
    await store.set_state("still", "writable")
    await store.close()


async def test_sqlite_database_is_in_wal_mode(tmp_path: Path) -> None:
    await (await open_store(tmp_path)).close()
    with sqlite3.connect(tmp_path / "bot.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    """Another process's writer, as SQLite sees it: a connection holding the write lock."""
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")
    return other


async def test_sqlite_write_cancelled_while_waiting_for_the_lock_leaves_the_store_writable(
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


async def test_sqlite_reads_do_not_queue_behind_a_writer_waiting_for_the_lock(
    tmp_path: Path,
) -> None:
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
