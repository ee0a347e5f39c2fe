"""The knowledge index: what the bot knows from KNOWLEDGE_DIR, kept under DATA_DIR/index (or, with
DATABASE_URL, in PostgreSQL, shared by replicas), and the hybrid search that finds the passages an
answer cites.

Keyword search (BM25) and dense search (a local embedding model by default, or an endpoint's)
both run for every question; `bot.knowledge.search` ranks their candidates together. Nothing is
cut for looking irrelevant: the model decides that, or without a model the calibrated
`Retrieval.relevant`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass, replace

from bot.knowledge.chunking import Chunk
from bot.knowledge.embeddings import Embedder, PassageVectors, describe, make_embedder
from bot.knowledge.files import IndexFiles
from bot.knowledge.keywords import KeywordIndex, Keywords
from bot.knowledge.parsing import Parse
from bot.knowledge.postgres import SharedStorage
from bot.knowledge.refresh import Progress, Refresher, RefreshReport
from bot.knowledge.search import DEFAULT_METHOD, Evidence, Method, rank
from bot.knowledge.storage import LocalStorage, Storage
from bot.knowledge.suggestions import suggested_questions
from bot.knowledge.vectors import DenseResult, VectorIndex
from bot.settings import Settings

log = logging.getLogger(__name__)

INDEX_DIRNAME = "index"

# Passages each search proposes before fusion; top_k is taken from the ranked list.
CANDIDATES = 40


@dataclass(frozen=True)
class Passage:
    """A passage the answer may cite. `score` is what it was ranked by: it orders the passages of
    one result (higher first) and means nothing across questions."""

    path: str
    heading: str | None
    text: str
    score: float


@dataclass(frozen=True)
class Retrieval:
    """The passages found for a question, best first, and how well the corpus seems to cover it
    (the keyless answer's judgement; with a key the model judges)."""

    passages: list[Passage]
    evidence: Evidence

    @property
    def relevant(self) -> bool:
        return bool(self.passages) and self.evidence.relevant


NOTHING = Retrieval([], Evidence(None, None, 0.0))


@dataclass(frozen=True)
class _Snapshot:
    """One consistent view of the index, swapped whole so searches never see a half refresh."""

    chunks: dict[str, Chunk]
    keywords: Keywords | None
    vectors: VectorIndex | None  # None: no vectors in the embedder's space (keyword search only)
    stamp: Hashable  # what it was read from (the manifest's inode and mtime; the version id)
    keywords_name: str | None  # the saved BM25 index it uses


class Knowledge:
    """The bot's searchable knowledge. Any number of processes may search one DATA_DIR (or one
    DATABASE_URL); one refreshes it at a time (`bot ingest`, or the bot at start)."""

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        parse: Parse | None = None,
    ) -> None:
        self._settings = settings
        self._parse = parse  # in place of chunk_file, in worker processes: a module-level function
        self._root = settings.data_dir / INDEX_DIRNAME
        self._files = IndexFiles(self._root)  # DATABASE_URL: only the saved BM25 index, a cache
        self._storage: Storage = (
            SharedStorage(settings.database_url.get_secret_value())
            if settings.database_url is not None
            else LocalStorage(self._files)
        )
        self._embedder = embedder or make_embedder(settings)
        self._snapshot: _Snapshot | None = None
        self._checked = 0.0  # monotonic time the snapshot's stamp was last compared
        self._reload: asyncio.Future[_Snapshot] | None = None
        self._load_lock = asyncio.Lock()
        self._refresh_lock = asyncio.Lock()
        # The last suggestions made, with the snapshot and limit they were made for.
        self._suggested: tuple[_Snapshot, int, list[str]] | None = None

    @property
    def loaded(self) -> bool:
        """Whether a snapshot of the index is in memory (searches don't wait to load one)."""
        return self._snapshot is not None

    # Searching.

    async def retrieve(
        self, query: str, *, api_key: str | None, top_k: int, method: Method = DEFAULT_METHOD
    ) -> Retrieval:
        """The `top_k` best passages for `query` and the evidence of how well they cover it.

        Every passage found is returned, however weak: whether they answer the question is the
        model's call (or, with no model, `Retrieval.relevant`'s). Dense search joins when the
        corpus has vectors and the question can be embedded; if it fails for any reason the
        answer goes on with keyword search alone.
        """
        snapshot = await self._current()
        if snapshot.keywords is None or not query.strip():
            return NOTHING
        keyword_hits = await snapshot.keywords.find(query)
        dense: DenseResult | None = None
        if snapshot.vectors is not None and method != "keyword":
            try:
                vector = await self._embedder.query(query, api_key=api_key)
            except Exception as exc:
                log.warning("dense search failed, using keyword search alone: %s", describe(exc))
                vector = None
            if vector is not None:
                also = [hit.chunk_id for hit in keyword_hits]
                dense = await asyncio.to_thread(snapshot.vectors.search, vector, CANDIDATES, also)
        ranked = rank(keyword_hits, dense, method=method)
        passages = [
            Passage(chunk.path, chunk.heading, chunk.text, score)
            for chunk, score in (
                (snapshot.chunks[chunk_id], score) for chunk_id, score in ranked.ranking[:top_k]
            )
        ]
        return Retrieval(passages, ranked.evidence)

    async def headings(self, limit: int) -> list[str]:
        """Up to `limit` distinct section headings of the corpus, in document order."""
        snapshot = await self._current()
        seen: dict[str, None] = {}
        for chunk in snapshot.chunks.values():
            if chunk.heading and not chunk.heading.startswith("page "):
                seen.setdefault(chunk.heading, None)
        return list(seen)[:limit]

    async def suggestions(self, limit: int) -> list[str]:
        """Up to `limit` questions a newcomer could ask, made from the headings of the index
        searches use now (`bot.knowledge.suggestions`); they change when the documents do."""
        snapshot = await self._current()
        made = self._suggested
        if made is None or made[0] is not snapshot or made[1] != limit:
            questions = suggested_questions(snapshot.chunks.values(), limit)
            self._suggested = made = (snapshot, limit, questions)
        return list(made[2])

    async def _current(self) -> _Snapshot:
        """The loaded snapshot, reloaded when another process (`bot ingest`) rewrote the index
        (asked at most every `check_every` seconds of the storage). A search waits for the
        reload at most the storage's `reload_wait` seconds, then answers from the snapshot it
        has: a replica rebuilding BM25 for 100k shared chunks takes seconds."""
        snapshot = self._snapshot
        if snapshot is not None and not await self._stale(snapshot):
            return snapshot
        if self._reload is None or self._reload.done():
            self._reload = asyncio.ensure_future(self._reloaded())
        wait = self._storage.reload_wait
        if snapshot is None or wait is None:
            return await asyncio.shield(self._reload)
        done, _ = await asyncio.wait({self._reload}, timeout=wait)
        return self._reload.result() if done else snapshot

    async def _reloaded(self) -> _Snapshot:
        async with self._load_lock:
            if self._snapshot is None or await self._stale(self._snapshot, recheck=True):
                self._snapshot = await self._load_snapshot()
                if not self._snapshot.chunks:
                    log.warning("the knowledge index is empty: run `bot ingest`")
            return self._snapshot

    async def _stale(self, snapshot: _Snapshot, *, recheck: bool = False) -> bool:
        now = time.monotonic()
        if not recheck and now - self._checked < self._storage.check_every:
            return False
        self._checked = now
        return snapshot.stamp != await self._storage.stamp()

    # Refreshing.

    async def refresh(self, progress: Progress | None = None) -> RefreshReport:
        """Bring the index in step with KNOWLEDGE_DIR, touching only new, changed and deleted files
        (and embedding only those, unless the embedding model changed).

        `progress(done, total)` is called as files are processed (total: files needing work).
        """
        async with self._refresh_lock, self._storage.exclusive():
            refresher = Refresher(self._settings, self._storage, self._embedder, self._parse)
            report = await refresher.run(progress)
        async with self._load_lock:
            self._snapshot = await self._load_snapshot()
            name = self._snapshot.keywords_name
            await asyncio.to_thread(self._files.remove_keyword_indexes, name)
            return replace(report, chunks=len(self._snapshot.chunks))

    async def refresh_at_start(self) -> str:
        """What `bot run` and `bot ask` do first; a line for the log. A local index is brought
        in step with KNOWLEDGE_DIR. A shared one (DATABASE_URL) is written by `bot ingest`
        only: a replica whose folder is missing, older or the bundled guide must not replace
        what was ingested, so it just loads what is there."""
        if not isinstance(self._storage, SharedStorage):
            return str(await self.refresh())
        snapshot = await self._current()
        return (
            f"the shared index in PostgreSQL: {len(snapshot.chunks)} passages "
            f"({'keyword + dense search' if snapshot.vectors else 'keyword search only'}); "
            "`bot ingest` updates it"
        )

    # The snapshot searches use.

    async def _load_snapshot(self) -> _Snapshot:
        loaded = await self._storage.load(self._embedder.space)
        chunks = loaded.chunks
        keywords: Keywords | None = None
        name: str | None = None
        if chunks and isinstance(self._storage, SharedStorage) and self._full_text:
            keywords = self._storage.full_text(loaded.stamp, CANDIDATES)
        elif chunks:
            keywords, name = await asyncio.to_thread(self._keywords, list(chunks.values()))
        vectors = _vector_index(loaded.parts, len(chunks))
        self._checked = time.monotonic()
        return _Snapshot(chunks, keywords, vectors, loaded.stamp, name)

    @property
    def _full_text(self) -> bool:
        return self._settings.keyword_search == "fulltext"

    def _keywords(self, chunks: list[Chunk]) -> tuple[KeywordIndex, str]:
        """The BM25 index of `chunks`: loaded when saved before, else built and saved (building
        tokenizes every chunk: seconds at 100k chunks, on every start)."""
        ids = [chunk.id for chunk in chunks]
        name = KeywordIndex.fingerprint(ids)
        directory = self._files.keywords_path(name)
        keywords = KeywordIndex.load(directory, ids, CANDIDATES)
        if keywords is None:
            keywords = KeywordIndex([(c.id, c.indexed_text) for c in chunks], CANDIDATES)
            try:
                keywords.save(directory)
            except OSError as exc:
                log.warning("could not save the keyword index (%s): it is rebuilt next start", exc)
        return keywords, name

    async def close(self) -> None:
        """Release the embedder's HTTP client and the database's connections, if any."""
        async with self._refresh_lock:
            if self._reload is not None and not self._reload.done():
                self._reload.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._reload
            await self._embedder.close()
            await self._storage.close()


def _vector_index(parts: list[tuple[list[str], PassageVectors]], chunks: int) -> VectorIndex | None:
    """Dense search over the passages, when they all have vectors (a partial set would rank the
    embedded ones above the rest for no reason of theirs)."""
    if not parts or sum(len(ids) for ids, _ in parts) != chunks:
        return None
    try:
        return VectorIndex(parts)
    except ValueError as exc:
        log.warning("vector files don't match their passages (%s): `bot ingest` redoes them", exc)
        return None
