"""The knowledge index: what the bot knows from KNOWLEDGE_DIR, kept under DATA_DIR/index, and the
hybrid search that finds the passages an answer cites.

Keyword search (BM25) and dense search (a local embedding model by default, or an endpoint's)
both run for every question; `bot.knowledge.search` ranks their candidates together. Nothing is
cut for looking irrelevant: the model decides that, or without a model the calibrated
`Retrieval.relevant`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bot.knowledge.chunking import Chunk, chunk_file, file_digest, source_files
from bot.knowledge.embeddings import Embedder, ModelFileError, PassageVectors, make_embedder
from bot.knowledge.embeddings import Passage as EmbedInput
from bot.knowledge.files import Entry, IndexFiles, Manifest
from bot.knowledge.keywords import KeywordIndex
from bot.knowledge.search import DEFAULT_METHOD, Evidence, Method, rank
from bot.knowledge.vectors import DenseResult, VectorIndex
from bot.settings import Settings

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

INDEX_DIRNAME = "index"

# Passages each search proposes before fusion; top_k is taken from the ranked list.
CANDIDATES = 40
# A long refresh commits its progress this often (seconds), so a crash loses at most this much
# work. By time, not every N files: the manifest grows with the corpus, so rewriting it every 50
# files made ingest quadratic (a quarter of a 100k-chunk ingest went on rewriting manifests).
CHECKPOINT_SECONDS = 10.0
# Files parsed at once: endpoint embedding calls wait on the network, not on these 2 cores (the
# local model takes one file at a time: see LocalEmbedder).
FILES_IN_FLIGHT = 4


@dataclass(frozen=True)
class Passage:
    """A passage the answer may cite. `score` is what it was ranked by: it orders the passages of
    one result (higher first) and means nothing across questions."""

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
    dense: bool = False  # every passage has an embedding in the embedder's space
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
    vectors: VectorIndex | None  # None: no vectors in the embedder's space (keyword search only)
    stamp: tuple[int, int] | None  # the manifest file it was read from (inode, mtime)
    keywords_name: str | None  # the saved BM25 index it uses


class Knowledge:
    """The bot's searchable knowledge. Any number of processes may search one DATA_DIR; one
    refreshes it at a time (`bot ingest`, or the bot at start)."""

    def __init__(self, settings: Settings, *, embedder: Embedder | None = None) -> None:
        self._settings = settings
        self._root = settings.data_dir / INDEX_DIRNAME
        self._files = IndexFiles(self._root)
        self._embedder = embedder or make_embedder(settings)
        self._snapshot: _Snapshot | None = None
        self._load_lock = asyncio.Lock()
        self._refresh_lock = asyncio.Lock()

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
        keyword_hits = await asyncio.to_thread(snapshot.keywords.search, query)
        dense: DenseResult | None = None
        if snapshot.vectors is not None and method != "keyword":
            try:
                vector = await self._embedder.query(query, api_key=api_key)
            except Exception as exc:
                log.warning("dense search failed, using keyword search alone: %s", _describe(exc))
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
        """Bring the index in step with KNOWLEDGE_DIR, touching only new, changed and deleted files
        (and embedding only those, unless the embedding model changed).

        `progress(done, total)` is called as files are processed (total: files needing work).
        """
        async with self._refresh_lock:
            return await self._refresh(progress)

    async def _refresh(self, progress: Progress | None) -> RefreshReport:
        manifest = await asyncio.to_thread(self._files.read_manifest)
        scan = await asyncio.to_thread(self._scan, manifest)
        intact = await asyncio.to_thread(self._files.intact, manifest)
        run = self._prepare_vectors(manifest)
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
        await asyncio.to_thread(self._files.remove_unlisted, manifest)
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
            dense=bool(manifest.files) and embedded and manifest.embedding == self._space,
            note=run.note,
        )

    @property
    def _space(self) -> dict[str, str]:
        return self._embedder.space

    def _prepare_vectors(self, manifest: Manifest) -> _Run:
        """Whether this refresh embeds; vectors of another space are dropped (never compared)."""
        if self._settings.embed_provider == "openai" and self._settings.openai_api_key is None:
            return _Run(
                dense=False, note="EMBED_PROVIDER=openai but no OPENAI_API_KEY to embed with"
            )
        if manifest.embedding != self._space:
            for entry in manifest.files.values():
                entry.vectors = False
            manifest.embedding = self._space
        return _Run(dense=True)

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
        has_vectors = run.dense
        if run.dense:
            try:
                vectors = await self._embedder.passages([_embed_input(c) for c in chunks])
            except Exception as exc:
                log.warning("embedding the documents failed: %s", _describe(exc))
                has_vectors = run.dense = False
                run.note = f"embedding failed ({_describe(exc)}); retried next refresh"
            else:
                await asyncio.to_thread(self._files.write_vectors, path, found.sha256, vectors)
        ids = [chunk.id for chunk in chunks]
        return Entry(found.sha256, found.size, found.mtime_ns, ids, has_vectors)

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

    # The snapshot searches use.

    def _load_snapshot(self) -> _Snapshot:
        stamp = self._files.stamp()
        manifest = self._files.read_manifest()
        chunks: dict[str, Chunk] = {}
        parts: list[tuple[list[str], PassageVectors]] = []
        same_space = manifest.embedding == self._space
        for path, entry in manifest.files.items():
            try:
                file_chunks = self._files.read_chunks(path, entry)
            except (OSError, ValueError, KeyError) as exc:
                log.warning(
                    "index files of %s unreadable (%s); `bot ingest` rebuilds them", path, exc
                )
                continue
            chunks.update((chunk.id, chunk) for chunk in file_chunks)
            if entry.vectors and same_space and file_chunks:
                try:
                    parts.append(
                        ([c.id for c in file_chunks], self._files.read_vectors(path, entry))
                    )
                except (OSError, ValueError, KeyError) as exc:
                    # Its passages stay findable by keyword. The file is derived data: without it
                    # the next refresh embeds the document again (see IndexFiles.intact).
                    log.warning(
                        "vectors of %s unreadable (%s); `bot ingest` redoes them", path, exc
                    )
                    self._files.vectors_path(path, entry.sha256).unlink(missing_ok=True)
        keywords, name = self._keywords(list(chunks.values())) if chunks else (None, None)
        vectors = _vector_index(parts, len(chunks))
        return _Snapshot(chunks, keywords, vectors, stamp, name)

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
        """Release the embedder's HTTP client, if it has one."""
        async with self._refresh_lock:
            await self._embedder.close()


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


def _embed_input(chunk: Chunk) -> EmbedInput:
    title = " / ".join(part for part in (chunk.path, chunk.context, chunk.heading or "") if part)
    return EmbedInput(title, chunk.text)


def _describe(exc: BaseException) -> str:
    """An error for the log without its message: endpoint errors may echo part of the API key.
    The local model's own errors hold none and say what to do, so they are kept."""
    if isinstance(exc, ModelFileError):
        return f"{type(exc).__name__}: {exc}"
    status = getattr(exc, "status_code", None)
    return f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "")
