"""The knowledge index in PostgreSQL (DATABASE_URL), as replicas on several machines share it: each
Knowledge below has a DATA_DIR of its own, as another machine would, and one database.

A replica picks up what another machine ingested without a restart, searches see the index before
an ingest or after it and never between, two ingests at once run one after the other, vectors of
another size are refused rather than mixed, and KEYWORD_SEARCH=fulltext searches in PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest

import bot.knowledge.index as index_module
from bot.knowledge import Knowledge
from bot.knowledge.chunking import Chunk
from bot.knowledge.embeddings import Passage as EmbedInput
from bot.knowledge.embeddings import PassageVectors, Vectors
from bot.knowledge.keywords import KeywordIndex
from bot.knowledge.postgres import VERSION_CHECK_SECONDS, SharedStorage
from bot.settings import Settings
from tests.store_backends import TEST_SECRET


class HashEmbedder:
    """Vectors from word hashes, `dimensions` wide: fast, and the same on every replica."""

    def __init__(self, dimensions: int = 16, model: str = "hash") -> None:
        self.dimensions = dimensions
        self.space = {"provider": "test", "model": model}

    def _vector(self, text: str) -> Vectors:
        vector = np.zeros(self.dimensions, np.float32)
        for word in text.lower().split():
            vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % self.dimensions] += 1
        return vector / (np.linalg.norm(vector) or 1.0)

    async def passages(self, passages: Sequence[EmbedInput]) -> PassageVectors:
        rows = [self._vector(p.text) for p in passages]
        matrix = np.stack(rows) if rows else np.zeros((0, self.dimensions), np.float32)
        return PassageVectors(matrix, np.arange(len(rows), dtype=np.int32))

    async def query(self, text: str, *, api_key: str | None) -> Vectors:
        return self._vector(text)

    async def close(self) -> None:
        return None


Open = Callable[..., Knowledge]


@pytest.fixture
async def replica(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., Knowledge]]:
    """replica(name, **settings): a Knowledge on its own DATA_DIR, sharing the database and the
    knowledge folder tmp_path/kb; closed at the end of the test. A search that finds a new
    version waits for it to load (but see the test of RELOAD_WAIT_SECONDS)."""
    monkeypatch.setattr(SharedStorage, "reload_wait", None)
    opened: list[Knowledge] = []

    def make(name: str, embedder: HashEmbedder | None = None, **values: Any) -> Knowledge:
        values.setdefault("knowledge_dir", tmp_path / "kb")
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=tmp_path / name,
            database_url=postgres_url,
            secret_key=TEST_SECRET,
            openai_api_key=None,
            **values,
        )
        opened.append(Knowledge(settings, embedder=embedder or HashEmbedder()))
        return opened[-1]

    yield make
    for knowledge in opened:
        await knowledge.close()


def write(tmp_path: Path, relative: str, text: str) -> None:
    path = tmp_path / "kb" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


async def found(knowledge: Knowledge, query: str) -> list[str]:
    retrieval = await knowledge.retrieve(query, api_key=None, top_k=5, method="keyword")
    return [p.path for p in retrieval.passages]


async def test_a_replica_sees_what_another_machine_ingested_without_a_restart(
    tmp_path: Path, replica: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(index_module.time, "monotonic", lambda: clock[0])
    write(tmp_path, "a.md", "# A\n\nThe alphaword lives here.\n")
    ingest = replica("ingest-machine")
    await ingest.refresh()
    serving = replica("bot-machine")
    assert await found(serving, "alphaword") == ["a.md"]
    write(tmp_path, "b.md", "# B\n\nThe lateword arrived.\n")

    await ingest.refresh()  # `bot ingest` on another machine while the bot runs
    within = await found(serving, "lateword")
    clock[0] += VERSION_CHECK_SECONDS
    after = await found(serving, "lateword")

    assert within == []  # it asks at most every VERSION_CHECK_SECONDS, not on every search
    assert after == ["b.md"]  # then loads the new version, its BM25 index built anew
    assert (await serving.retrieve("lateword", api_key=None, top_k=5)).evidence.cosine is not None


async def test_searches_see_the_index_before_an_ingest_or_after_it_never_between(
    tmp_path: Path, replica: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SharedStorage, "check_every", 0.0)  # look on every search
    write(tmp_path, "a.md", "# A\n\nThe oldword is here.\n")
    write(tmp_path, "b.md", "# B\n\nbeta text\n")
    ingest = replica("ingest-machine")
    await ingest.refresh()
    serving = replica("bot-machine")
    write(tmp_path, "a.md", "# A\n\nThe newword is here.\n")
    write(tmp_path, "c.md", "# C\n\nThe extraword joined.\n")
    halfway, go_on = asyncio.Event(), asyncio.Event()
    write_chunks = SharedStorage.write_chunks

    async def pausing(self: SharedStorage, path: str, sha256: str, chunks: Sequence[Chunk]) -> None:
        await write_chunks(self, path, sha256, chunks)
        halfway.set()  # one new document stored, the others not yet
        await go_on.wait()

    monkeypatch.setattr(SharedStorage, "write_chunks", pausing)
    refreshing = asyncio.create_task(ingest.refresh())
    paused = asyncio.create_task(halfway.wait())
    await asyncio.wait([paused, refreshing], return_when=asyncio.FIRST_COMPLETED)
    during = [await found(serving, word) for word in ("oldword", "newword", "extraword")]
    go_on.set()
    await refreshing
    after = [await found(serving, word) for word in ("oldword", "newword", "extraword")]

    assert during == [["a.md"], [], []]
    assert after == [[], ["a.md"], ["c.md"]]


async def test_a_replica_answers_from_the_version_it_has_while_it_loads_the_next(
    tmp_path: Path, replica: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SharedStorage, "check_every", 0.0)
    write(tmp_path, "a.md", "# A\n\nThe oldword is here.\n")
    ingest, serving = replica("ingest-machine"), replica("bot-machine")
    await ingest.refresh()
    assert await found(serving, "oldword") == ["a.md"]
    write(tmp_path, "a.md", "# A\n\nThe newword is here.\n")
    await ingest.refresh()
    loaded = asyncio.Event()
    load = SharedStorage.load

    async def slow_load(self: SharedStorage, space: dict[str, str]) -> Any:
        await loaded.wait()  # 100k chunks' BM25 takes seconds
        return await load(self, space)

    monkeypatch.setattr(SharedStorage, "load", slow_load)
    monkeypatch.setattr(SharedStorage, "reload_wait", 0.0)

    searching = asyncio.create_task(found(serving, "oldword"))
    # A guard, not a time asserted: a replica that waits for the load never answers before it.
    await asyncio.wait({searching}, timeout=30)
    meanwhile = searching.result() if searching.done() else "waited for the new version"
    loaded.set()
    await searching
    while await found(serving, "newword") != ["a.md"]:
        await asyncio.sleep(0.01)

    assert meanwhile == ["a.md"]  # answered at once, from the version it had
    assert await found(serving, "oldword") == []


async def test_two_ingests_at_once_run_one_after_the_other(
    tmp_path: Path, replica: Open, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(6):
        write(tmp_path, f"doc{n}.md", f"# Doc {n}\n\nThe word{n} is here.\n")
    first, second = replica("machine-1"), replica("machine-2")

    with caplog.at_level(logging.WARNING, logger="bot.knowledge.postgres"):
        reports = await asyncio.gather(first.refresh(), second.refresh())

    # One indexed everything; the other waited for it, then found nothing left to do.
    assert sorted(len(r.added) for r in reports) == [0, 6]
    assert sorted(len(r.unchanged) for r in reports) == [0, 6]
    assert "waiting for it to finish" in caplog.text
    reader = replica("machine-3")
    for n in range(6):
        assert await found(reader, f"word{n}") == [f"doc{n}.md"]
    connection = await asyncpg.connect(postgres_url)
    try:
        chunks = await connection.fetchval("SELECT count(*) FROM knowledge_chunks")
        versions = await connection.fetchval("SELECT count(*) FROM knowledge_versions")
    finally:
        await connection.close()
    assert (chunks, versions) == (6, 1)  # the second published no version of its own


async def test_vectors_of_another_size_under_the_same_model_are_refused_not_mixed(
    tmp_path: Path, replica: Open
) -> None:
    write(tmp_path, "a.md", "# A\n\nalpha text\n")
    await replica("one", HashEmbedder(dimensions=16)).refresh()
    write(tmp_path, "b.md", "# B\n\nbeta text\n")

    with pytest.raises(ValueError, match="8-dimension vectors where the index holds 16"):
        await replica("two", HashEmbedder(dimensions=8)).refresh()
    serving = replica("three", HashEmbedder(dimensions=16))
    result = await serving.retrieve("alpha text", api_key=None, top_k=5)

    assert [p.path for p in result.passages] == ["a.md"]  # the last whole index, dense and all
    assert result.evidence.cosine is not None


async def test_full_text_search_finds_stemmed_words_in_postgresql(
    tmp_path: Path, replica: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_bm25(*args: object, **kwargs: object) -> None:
        raise AssertionError("KEYWORD_SEARCH=fulltext built a BM25 index in memory")

    monkeypatch.setattr(KeywordIndex, "__init__", no_bm25)
    monkeypatch.setattr(KeywordIndex, "load", no_bm25)
    write(tmp_path, "rotate.md", "# Rotating keys\n\nRotate the signing credentials monthly.\n")
    write(tmp_path, "holiday.md", "# Holidays\n\nThe office closes in August.\n")
    write(tmp_path, "gone.md", "# Gone\n\nThe goneword credentials.\n")
    knowledge = replica("fts", keyword_search="fulltext")
    await knowledge.refresh()
    (tmp_path / "kb" / "gone.md").unlink()

    report = await knowledge.refresh()
    stemmed = await found(knowledge, "how do I rotate my credential?")

    assert report.removed == ("gone.md",)
    assert stemmed == ["rotate.md"]  # "credential" matched "credentials"; no AND of every word
    assert await found(knowledge, "goneword") == []
    assert await found(knowledge, "the and of") == []  # stop words alone match nothing


async def test_a_replica_starting_without_the_documents_keeps_the_shared_index(
    tmp_path: Path, replica: Open
) -> None:
    write(tmp_path, "a.md", "# A\n\nThe alphaword lives here.\n")
    await replica("ingest-machine").refresh()
    starting = replica("bot-machine", knowledge_dir=tmp_path / "empty")  # no documents here

    line = await starting.refresh_at_start()  # what `bot run` does first

    assert await found(starting, "alphaword") == ["a.md"]
    assert line.startswith("the shared index in PostgreSQL: 1 passages")
