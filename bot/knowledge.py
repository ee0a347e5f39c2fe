"""The knowledge index: what the bot knows from KNOWLEDGE_DIR, kept under DATA_DIR/index, and the
hybrid search that finds the passages an answer cites.

Keyword search (BM25) always works; dense vectors (Qdrant local mode, OpenAI-compatible embeddings)
join by reciprocal rank fusion when the corpus was embedded and the asker has a key. A relevance
cutoff drops passages that merely share a word, so an off-topic question gets no passages at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from bot.chunking import Chunk, chunk_file, file_digest, source_files
from bot.manifest import Entry, IndexFiles, Manifest
from bot.retrievers import KeywordIndex, VectorIndex, VectorsBusy, fuse
from bot.settings import Settings

if TYPE_CHECKING:  # imported when first used: a keyword-only bot starts a second sooner
    from llama_index.embeddings.openai import OpenAIEmbedding
    from openai import DefaultAsyncHttpxClient

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

INDEX_DIRNAME = "index"
VECTORS_DIRNAME = "qdrant"

# Passages each retriever proposes before fusion and the cutoff; top_k is taken from the fused list.
CANDIDATES = 40
# A passage is relevant when it holds this share of the question's informative words (weighted by
# how rare each word is in the corpus; words the corpus never uses weigh the most) ...
MIN_KEYWORD_COVERAGE = 1 / 3
# ... or when its embedding is at least this cosine-similar to the question's. Set for OpenAI's
# text-embedding-3 models, where unrelated text scores roughly 0.0-0.2 and related passages well
# above 0.3; other models have other baselines (some score unrelated text 0.4+), so this would
# need raising for them.
MIN_DENSE_SIMILARITY = 0.3

# Embedding calls: the corpus at refresh may wait out rate limits; a question must not.
EMBED_BATCH = 64
CORPUS_EMBED_RETRIES = 3
CORPUS_EMBED_TIMEOUT = 60.0
QUERY_EMBED_RETRIES = 0
QUERY_EMBED_TIMEOUT = 8.0
EMBEDDERS_KEPT = 16  # one client per distinct workspace key, least recently used dropped
# A long refresh commits its progress this often (seconds), so a crash loses at most this much
# work. By time, not every N files: the manifest grows with the corpus, so rewriting it every 50
# files made ingest quadratic (a quarter of a 100k-chunk ingest went on rewriting manifests).
CHECKPOINT_SECONDS = 10.0
# Files parsed and embedded at once: embedding calls wait on the network, not on these 2 cores.
FILES_IN_FLIGHT = 4


@dataclass(frozen=True)
class Passage:
    """A passage the answer may cite. `score` is its reciprocal-rank-fused score: it orders the
    passages of one result (higher first) and means nothing across questions."""

    path: str
    heading: str | None
    text: str
    score: float


@dataclass(frozen=True)
class RefreshReport:
    """What one refresh did, by file path (relative to KNOWLEDGE_DIR)."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()  # unreadable now; a changed one keeps its previous version
    chunks: int = 0  # passages in the index after the refresh
    dense: bool = False  # every passage has an embedding for EMBED_MODEL
    note: str | None = None  # why dense search is off, when it is

    def __str__(self) -> str:
        return self.summary()

    def summary(self) -> str:
        counts = (
            f"{len(self.added)} added, {len(self.changed)} changed, {len(self.removed)} removed, "
            f"{len(self.unchanged)} unchanged"
            + (f", {len(self.failed)} unreadable" if self.failed else "")
        )
        mode = "keyword + dense search" if self.dense else "keyword search only"
        return f"{counts}; {self.chunks} passages; {mode}" + (
            f" ({self.note})" if self.note else ""
        )


@dataclass(frozen=True)
class _Found:
    """A document as the scan found it."""

    source: Path
    sha256: str
    size: int
    mtime_ns: int


@dataclass
class _Run:
    """What one refresh learns as it goes."""

    dense: bool
    note: str | None = None
    failed: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class _Snapshot:
    """One consistent view of the index, swapped whole so searches never see a half refresh."""

    chunks: dict[str, Chunk]
    keywords: KeywordIndex | None
    with_vectors: frozenset[str]
    embedding: dict[str, str] | None
    stamp: tuple[int, int] | None  # the manifest file it was read from (inode, mtime)
    keywords_name: str | None  # the saved BM25 index it uses


class Knowledge:
    """The bot's searchable knowledge; one per process (Qdrant local mode allows one)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._root = settings.data_dir / INDEX_DIRNAME
        self._files = IndexFiles(self._root)
        self._snapshot: _Snapshot | None = None
        self._load_lock = asyncio.Lock()
        self._refresh_lock = asyncio.Lock()
        self._vectors: VectorIndex | None = None
        self._http: DefaultAsyncHttpxClient | None = None
        self._embedders: OrderedDict[str, OpenAIEmbedding] = OrderedDict()

    # Searching.

    async def retrieve(self, query: str, *, api_key: str | None, top_k: int) -> list[Passage]:
        """The `top_k` most relevant passages for `query`; [] when nothing is plausibly relevant.

        Dense search joins when `api_key` is given and the corpus has vectors for EMBED_MODEL; if
        it fails for any reason the answer goes on with keyword search alone.
        """
        snapshot = await self._current()
        if snapshot.keywords is None or not query.strip():
            return []
        rankings = [await asyncio.to_thread(self._keyword_ranking, snapshot, query)]
        if api_key and snapshot.with_vectors and snapshot.embedding == self._embedding_id():
            try:
                rankings.append(await self._dense_ranking(snapshot, query, api_key))
            except Exception as exc:
                log.warning("dense search failed, using keyword search alone: %s", _describe(exc))
        fused = fuse(rankings)[:top_k]
        return [
            Passage(chunk.path, chunk.heading, chunk.text, score)
            for chunk, score in ((snapshot.chunks[chunk_id], score) for chunk_id, score in fused)
        ]

    @staticmethod
    def _keyword_ranking(snapshot: _Snapshot, query: str) -> list[str]:
        assert snapshot.keywords is not None
        hits = snapshot.keywords.search(query)
        return [hit.chunk_id for hit in hits if hit.coverage >= MIN_KEYWORD_COVERAGE]

    async def _dense_ranking(self, snapshot: _Snapshot, query: str, api_key: str) -> list[str]:
        embedder = self._embedder(api_key, retries=QUERY_EMBED_RETRIES, timeout=QUERY_EMBED_TIMEOUT)
        vector = await embedder.aget_query_embedding(query)
        vectors = await self._open_vectors()
        hits = await asyncio.to_thread(vectors.query, vector, CANDIDATES)
        return [
            chunk_id
            for chunk_id, similarity in hits
            if similarity >= MIN_DENSE_SIMILARITY and chunk_id in snapshot.with_vectors
        ]

    async def _current(self) -> _Snapshot:
        """The loaded snapshot, reloaded when another process (`bot ingest`) rewrote the index."""
        snapshot = self._snapshot
        if snapshot is not None and snapshot.stamp == self._files.stamp():
            return snapshot
        async with self._load_lock:
            if self._snapshot is None or self._snapshot.stamp != self._files.stamp():
                self._snapshot = await asyncio.to_thread(self._load_snapshot)
                if not self._snapshot.chunks:
                    log.warning("the knowledge index is empty: run `bot ingest`")
            return self._snapshot

    # Refreshing.

    async def refresh(self, progress: Progress | None = None) -> RefreshReport:
        """Bring the index in step with KNOWLEDGE_DIR, touching only new, changed and deleted files.

        `progress(done, total)` is called as files are processed (total: files needing work).
        """
        async with self._refresh_lock:
            return await self._refresh(progress)

    async def _refresh(self, progress: Progress | None) -> RefreshReport:
        manifest = await asyncio.to_thread(self._files.read_manifest)
        scan = await asyncio.to_thread(self._scan, manifest)
        intact = await asyncio.to_thread(self._files.intact, manifest)
        run = _Run(dense=False)
        await self._prepare_vectors(manifest, run)
        added = [path for path in scan if path not in manifest.files]
        # A file whose chunk file went missing is parsed again, as if it had changed.
        changed = [p for p in scan if p in manifest.files and scan[p].sha256 != intact.get(p)]
        removed = [path for path in manifest.files if path not in scan]
        to_parse = set(added) | set(changed)
        unchanged = [path for path in scan if path not in to_parse]
        for path in unchanged:  # a touched file keeps its chunks but records its new stat
            manifest.files[path].size = scan[path].size
            manifest.files[path].mtime_ns = scan[path].mtime_ns
        to_embed = [path for path in unchanged if run.dense and not manifest.files[path].vectors]
        work = added + changed + to_embed
        only_embed = set(to_embed)
        if progress:
            progress(0, len(work))
        done = 0
        checkpointed = time.monotonic()
        slots = asyncio.Semaphore(FILES_IN_FLIGHT)

        async def index(path: str) -> None:
            nonlocal done, checkpointed
            async with slots:
                entry = await self._index_file(path, scan[path], manifest, path in only_embed, run)
            if entry is not None:
                manifest.files[path] = entry
            done += 1
            if progress:
                progress(done, len(work))
            if time.monotonic() - checkpointed >= CHECKPOINT_SECONDS:
                checkpointed = time.monotonic()
                await asyncio.to_thread(self._files.write_manifest, manifest)

        try:
            async with asyncio.TaskGroup() as tasks:
                for path in work:
                    tasks.create_task(index(path))
        except ExceptionGroup as group:
            # Callers expect one error (disk full, ...); the other files were cancelled.
            raise group.exceptions[0] from None
        for path in removed:
            del manifest.files[path]
        await asyncio.to_thread(self._files.write_manifest, manifest)
        await asyncio.to_thread(self._collect_garbage, manifest)
        self._snapshot = await asyncio.to_thread(self._load_snapshot)
        await asyncio.to_thread(self._files.remove_keyword_indexes, self._snapshot.keywords_name)
        embedded = all(entry.vectors for entry in manifest.files.values())
        return RefreshReport(
            added=tuple(p for p in added if p not in run.failed),
            changed=tuple(p for p in changed if p not in run.failed),
            removed=tuple(removed),
            unchanged=tuple(unchanged),
            failed=tuple(sorted(run.failed)),
            chunks=len(self._snapshot.chunks),
            dense=bool(manifest.files) and embedded and manifest.embedding == self._embedding_id(),
            note=run.note,
        )

    async def _prepare_vectors(self, manifest: Manifest, run: _Run) -> None:
        """Open the vector store for this refresh, if the documents can be embedded at all."""
        if self._settings.openai_api_key is None:
            run.note = "no OPENAI_API_KEY to embed the documents with"
            return
        try:
            vectors = await self._open_vectors()
        except VectorsBusy:
            run.note = "the vector store is open in another process (is the bot running?)"
            return
        run.dense = True
        if manifest.embedding != self._embedding_id():
            # Vectors from another model (or none yet) cannot be compared: start afresh.
            await asyncio.to_thread(vectors.reset)
            for entry in manifest.files.values():
                entry.vectors = False
            manifest.embedding = self._embedding_id()

    async def _index_file(
        self, path: str, found: _Found, manifest: Manifest, only_embed: bool, run: _Run
    ) -> Entry | None:
        """Parse (or, `only_embed`, reload) one file's chunks and embed them; None if unreadable,
        which leaves its previous version, if any, in the index."""
        try:
            if only_embed:
                chunks = await asyncio.to_thread(
                    self._files.read_chunks, path, manifest.files[path]
                )
            else:
                chunks = await asyncio.to_thread(chunk_file, found.source, path, found.sha256)
        except Exception as exc:
            # Parsers raise anything; their messages hold no secrets and say what is wrong.
            log.warning("could not index %s: %s: %s", path, type(exc).__name__, exc)
            run.failed.add(path)
            return None
        if not only_embed:  # failing to write the index is not the document's fault: raise
            await asyncio.to_thread(self._files.write_chunks, path, found.sha256, chunks)
        has_vectors = run.dense  # a file without text has all the vectors it needs
        key = self._settings.openai_api_key
        if run.dense and chunks and key is not None:
            try:
                await self._embed_corpus(chunks, key.get_secret_value())
            except Exception as exc:
                log.warning("embedding the documents failed: %s", _describe(exc))
                has_vectors = run.dense = False
                run.note = f"embedding failed ({_describe(exc)}); retried next refresh"
        ids = [chunk.id for chunk in chunks]
        return Entry(found.sha256, found.size, found.mtime_ns, ids, has_vectors)

    async def _embed_corpus(self, chunks: Sequence[Chunk], api_key: str) -> None:
        embedder = self._embedder(
            api_key, retries=CORPUS_EMBED_RETRIES, timeout=CORPUS_EMBED_TIMEOUT
        )
        embeddings = await embedder.aget_text_embedding_batch([c.indexed_text for c in chunks])
        vectors = await self._open_vectors()
        await asyncio.to_thread(vectors.add, [c.id for c in chunks], embeddings)

    def _scan(self, manifest: Manifest) -> dict[str, _Found]:
        """The supported files of KNOWLEDGE_DIR; one whose size and mtime are as recorded is not
        read again."""
        scan: dict[str, _Found] = {}
        for path, source in source_files(self._settings.knowledge_dir).items():
            stat = source.stat()
            entry = manifest.files.get(path)
            if entry and (entry.size, entry.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
                sha = entry.sha256
            else:
                sha = file_digest(source)
            scan[path] = _Found(source, sha, stat.st_size, stat.st_mtime_ns)
        return scan

    # The snapshot searches use, and what the manifest no longer needs.

    def _load_snapshot(self) -> _Snapshot:
        stamp = self._files.stamp()
        manifest = self._files.read_manifest()
        chunks: dict[str, Chunk] = {}
        with_vectors: set[str] = set()
        for path, entry in manifest.files.items():
            try:
                file_chunks = self._files.read_chunks(path, entry)
            except (OSError, ValueError, KeyError) as exc:
                log.warning(
                    "index files of %s unreadable (%s); `bot ingest` rebuilds them", path, exc
                )
                continue
            chunks.update((chunk.id, chunk) for chunk in file_chunks)
            if entry.vectors:
                with_vectors.update(chunk.id for chunk in file_chunks)
        keywords, name = self._keywords(list(chunks.values())) if chunks else (None, None)
        return _Snapshot(chunks, keywords, frozenset(with_vectors), manifest.embedding, stamp, name)

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

    def _collect_garbage(self, manifest: Manifest) -> None:
        """Delete chunk files and vectors the manifest no longer names (old versions, deleted
        files, the leftovers of an interrupted refresh)."""
        self._files.remove_unlisted(manifest)
        if self._vectors is not None:
            live_ids = {chunk_id for e in manifest.files.values() for chunk_id in e.chunks}
            self._vectors.delete(self._vectors.ids() - live_ids)

    # Dense search plumbing.

    def _embedding_id(self) -> dict[str, str]:
        return {"model": self._settings.embed_model, "base_url": self._settings.openai_base_url}

    async def _open_vectors(self) -> VectorIndex:
        if self._vectors is None:
            self._vectors = await asyncio.to_thread(VectorIndex, self._root / VECTORS_DIRNAME)
        return self._vectors

    def _embedder(self, api_key: str, *, retries: int, timeout: float) -> OpenAIEmbedding:
        cache_key = f"{retries}:{timeout}:{api_key}"
        embedder = self._embedders.get(cache_key)
        if embedder is None:
            from llama_index.embeddings.openai import OpenAIEmbedding
            from openai import DefaultAsyncHttpxClient

            if self._http is None:
                # Ours, so close() can close it; openai's default class suits openai 2 and 3.
                self._http = DefaultAsyncHttpxClient()
            # `model_name` sends EMBED_MODEL as is: `model=` accepts only OpenAI's own names.
            embedder = OpenAIEmbedding(
                model_name=self._settings.embed_model,
                api_key=api_key,
                api_base=self._settings.openai_base_url,
                max_retries=retries,
                timeout=timeout,
                embed_batch_size=EMBED_BATCH,
                # Annotated as httpx, but handed to openai, which on 3.x takes httpx2.
                async_http_client=cast(Any, self._http),
            )
            self._embedders[cache_key] = embedder
            while len(self._embedders) > EMBEDDERS_KEPT:
                self._embedders.popitem(last=False)
        self._embedders.move_to_end(cache_key)
        return embedder

    async def close(self) -> None:
        """Release the vector store (so another process may open it) and the HTTP client."""
        async with self._refresh_lock:
            if self._vectors is not None:
                await asyncio.to_thread(self._vectors.close)
                self._vectors = None
            if self._http is not None:
                await self._http.aclose()
                self._http = None
            self._embedders.clear()


def _describe(exc: BaseException) -> str:
    """An error for the log without its message: endpoint errors may echo part of the API key."""
    status = getattr(exc, "status_code", None)
    return f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "")
