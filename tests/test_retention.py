"""Retention (issue 13, item 13): old threads (with their messages and feedback), event claims
and reply links are pruned, in batches that let other writes in, at start and periodically."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot.core import Core
from bot.retention import DAY, HOUR, Pruner
from bot.settings import Settings
from bot.store import Store, migration_files
from bot.store.driver import timestamp
from bot.vault import Vault
from tests.store_backends import Backend

WAIT = 10.0  # generous: a wait that runs out is a failure, never a pass
NOW = time.time()


async def open_store(path: Path, migrations_dir: Path | None = None) -> Store:
    return await Store.open(path, Vault(b"k" * 32), migrations_dir=migrations_dir)


async def exchange(store: Store, thread_key: str, question: str = "q") -> int:
    return await store.record_exchange(
        thread_key=thread_key,
        workspace="slack:T1",
        question=question,
        answer="a",
        sources=[],
        status="done",
    )


async def backdate(backend: Backend, thread_key: str, days: float) -> None:
    """Make a thread and all its messages `days` old (the schema's TEXT timestamps)."""
    then = timestamp(time.time() - days * DAY)
    await backend.execute(
        "UPDATE conversations SET created_at = ? WHERE thread_key = ?", (then, thread_key)
    )
    await backend.execute(
        "UPDATE messages SET created_at = ? "
        "WHERE conversation_id = (SELECT id FROM conversations WHERE thread_key = ?)",
        (then, thread_key),
    )


COUNTS = {
    "conversations": "SELECT count(*) FROM conversations",
    "messages": "SELECT count(*) FROM messages",
    "processed_events": "SELECT count(*) FROM processed_events",
}


async def count(backend: Backend, table: str) -> int:
    return int(await backend.scalar(COUNTS[table]))


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(WAIT):
        while not await check():
            await asyncio.sleep(0.01)


def settings_for(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, openai_api_key=None, **values)  # type: ignore[arg-type]


async def open_on(backend: Backend) -> Store:
    return await backend.open(Vault(b"k" * 32))


async def test_threads_idle_past_the_retention_go_with_their_messages_and_feedback(
    backend: Backend, tmp_path: Path
) -> None:
    store = await open_on(backend)
    answer = await exchange(store, "slack:T1:C1:old")
    await store.set_feedback(answer, 1, user="U1", workspace="slack:T1")
    await exchange(store, "slack:T1:C1:revived")  # old, but someone followed up yesterday
    await exchange(store, "slack:T1:C1:new")
    await store.ensure_conversation("slack:T1:C1:joined", "slack:T1")  # joined, never answered
    await backdate(backend, "slack:T1:C1:old", 100)
    await backdate(backend, "slack:T1:C1:revived", 100)
    await backdate(backend, "slack:T1:C1:joined", 100)
    await exchange(store, "slack:T1:C1:revived", "one more thing")

    pruned = await Pruner(settings_for(tmp_path, retention_days=90), store).prune()

    assert pruned.conversations == 2
    assert not await store.has_conversation("slack:T1:C1:old")
    assert not await store.has_conversation("slack:T1:C1:joined")
    assert await store.get_message(answer) is None  # the answer and its 👍 are gone
    assert [m.text for m in await store.thread_messages("slack:T1:C1:revived")] == [
        "q",
        "a",
        "one more thing",
        "a",
    ]
    assert await store.has_conversation("slack:T1:C1:new")
    # A follow-up in the pruned thread simply starts it afresh.
    await exchange(store, "slack:T1:C1:old", "still there?")
    assert [m.text for m in await store.thread_messages("slack:T1:C1:old")] == ["still there?", "a"]
    await store.close()
    assert await count(backend, "messages") == 8


async def test_old_event_claims_and_reply_links_go_and_recent_ones_still_count(
    backend: Backend, tmp_path: Path
) -> None:
    store = await open_on(backend)
    await backend.execute(  # answered three days ago
        "INSERT INTO processed_events VALUES ('Ev-old', ?, 1)", (NOW - 3 * DAY,)
    )
    assert await store.claim_event("Ev-recent")
    await store.finish_event("Ev-recent")
    await store.link_message(
        "discord:1", "discord.thread_of:10", "discord:1:2:10", at=NOW - 91 * DAY
    )
    await store.link_message(
        "discord:1", "discord.thread_of:11", "discord:1:2:11", at=NOW - 3 * DAY
    )
    settings = settings_for(tmp_path, retention_days=90, event_retention_hours=48)

    pruned = await Pruner(settings, store, lambda: NOW).prune()

    assert (pruned.events, pruned.links) == (1, 1)
    assert not await store.claim_event("Ev-recent")  # a redelivery is still refused
    assert await count(backend, "processed_events") == 1
    assert await store.linked_thread("discord:1", "discord.thread_of:10") is None
    assert await store.linked_thread("discord:1", "discord.thread_of:11") == "discord:1:2:11"
    await store.close()


async def test_zero_keeps_everything_for_ever(backend: Backend, tmp_path: Path) -> None:
    store = await open_on(backend)
    await exchange(store, "slack:T1:C1:old")
    await backdate(backend, "slack:T1:C1:old", 1000)
    assert await store.claim_event("Ev1")
    await store.link_message("discord:1", "discord.thread_of:10", "discord:1:2:10", at=0.0)
    settings = settings_for(tmp_path, retention_days=0, event_retention_hours=0)
    pruned = await Pruner(settings, store, lambda: NOW + 1000 * DAY).prune()
    assert (pruned.conversations, pruned.events, pruned.links) == (0, 0, 0)
    assert await store.has_conversation("slack:T1:C1:old")
    await store.close()


async def test_a_big_prune_lets_answers_be_stored_between_its_batches(backend: Backend) -> None:
    store = await open_on(backend)
    for n in range(50):
        await exchange(store, f"slack:T1:C1:{n}")
    await backend.execute("UPDATE conversations SET created_at = '2000-01-01T00:00:00.000Z'")
    await backend.execute("UPDATE messages SET created_at = '2000-01-01T00:00:00.000Z'")
    prune = asyncio.create_task(
        store.prune(threads_before=NOW - DAY, events_before=None, links_before=None, batch=5)
    )
    await asyncio.sleep(0)  # its first batch has the write lock
    await exchange(store, "slack:T1:C1:new")  # an answer finishing meanwhile
    # Stored after the first batch, not after the whole prune: the later threads still wait.
    assert await store.has_conversation("slack:T1:C1:49")
    assert (await prune).conversations == 50
    assert await store.has_conversation("slack:T1:C1:new")
    await store.close()
    assert await count(backend, "conversations") == 1


async def test_sqlite_reply_links_made_before_the_upgrade_still_lead_to_their_thread(
    tmp_path: Path,
) -> None:
    old_migrations = tmp_path / "migrations"
    old_migrations.mkdir()
    for file in migration_files():
        if file.name < "0004":
            shutil.copy(file, old_migrations)
    path = tmp_path / "bot.db"
    store = await open_store(path, old_migrations)
    # How bot/conversation.py kept the Discord reply map before: workspace_settings rows.
    await store.set_setting("discord:1", "discord.thread_of:10", "discord:1:2:10")
    await store.close()

    store = await open_store(path)
    assert await store.linked_thread("discord:1", "discord.thread_of:10") == "discord:1:2:10"
    assert await store.get_setting("discord:1", "discord.thread_of:10") is None
    # Counted from the upgrade: kept a whole retention period, then pruned like any other.
    settings = settings_for(tmp_path, retention_days=90)
    assert (await Pruner(settings, store, lambda: time.time() + 89 * DAY).prune()).links == 0
    assert (await Pruner(settings, store, lambda: time.time() + 91 * DAY).prune()).links == 1
    await store.close()


async def test_a_running_bot_prunes_at_start_and_then_every_interval(
    backend: Backend, fake_settings: Settings
) -> None:
    deployment = backend.settings(data_dir=fake_settings.data_dir)
    settings = fake_settings.model_copy(
        update={
            "retention_days": 1,
            "event_retention_hours": 1,
            "prune_interval": 0.05,
            "database_url": deployment.database_url,
            "secret_key": deployment.secret_key,
        }
    )
    assert backend.path == settings.database_path  # the same database as the bot's
    store = await open_on(backend)
    await exchange(store, "slack:T1:C1:before")
    await store.close()
    await backdate(backend, "slack:T1:C1:before", 2)

    core = await Core.open(settings)
    try:
        await until(lambda: _gone(core.store, "slack:T1:C1:before"))  # at start
        await exchange(core.store, "slack:T1:C1:during")
        await exchange(core.store, "slack:T1:C1:recent")
        await backend.execute(
            "INSERT INTO processed_events VALUES ('Ev-old', ?, 1)", (NOW - 2 * HOUR,)
        )
        await backdate(backend, "slack:T1:C1:during", 2)
        await until(lambda: _gone(core.store, "slack:T1:C1:during"))  # by a later round
        assert await core.store.claim_event("Ev-old")  # its old claim went too
        assert await core.store.has_conversation("slack:T1:C1:recent")
    finally:
        await core.close()


async def _gone(store: Store, thread_key: str) -> bool:
    return not await store.has_conversation(thread_key)
