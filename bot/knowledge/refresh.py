"""Bringing the index in step with KNOWLEDGE_DIR: which documents are new, changed or gone, parsing
and embedding only those, and committing the manifest so a crash loses at most a few seconds.

Run by `Knowledge.refresh`, which then loads the new snapshot for searches.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bot.knowledge.chunking import Chunk, chunk_file, file_digest, source_files
from bot.knowledge.embeddings import Embedder, describe
from bot.knowledge.embeddings import Passage as EmbedInput
from bot.knowledge.files import Entry, Manifest
from bot.knowledge.parsing import Parse, Parsers, ParseTimeout
from bot.knowledge.storage import Storage
from bot.settings import Settings

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

# A long refresh commits its progress this often (seconds), so a crash loses at most this much
# work. By time, not every N files: the manifest grows with the corpus, so rewriting it every 50
# files made ingest quadratic (a quarter of a 100k-chunk ingest went on rewriting manifests).
CHECKPOINT_SECONDS = 10.0
# Files parsed at once: endpoint embedding calls wait on the network, not on these 2 cores (the
# local model takes one file at a time: see LocalEmbedder).
FILES_IN_FLIGHT = 4
# Worker processes parsing at once (bot.knowledge.parsing), while a refresh has files to parse:
# two, so one slow file does not hold up the rest, and no more, as each holds ~220 MB (measured:
# llama-index and pypdf loaded; the parsing threads before shared the bot's memory and one core).
PARSE_WORKERS = min(2, os.cpu_count() or 1)


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


class Refresher:
    """One refresh of the index in its storage (one at a time: see Knowledge)."""

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        embedder: Embedder,
        parse: Parse | None = None,
    ) -> None:
        self._settings = settings
        self._storage = storage
        self._embedder = embedder
        self._parse = parse or chunk_file

    async def run(self, progress: Progress | None) -> RefreshReport:
        """The refresh; the report's `chunks` is left for the caller, who loads the result.

        `progress(done, total)` is called as files are processed (total: files needing work).
        """
        parsers = Parsers(
            seconds=self._settings.max_parse_seconds, workers=PARSE_WORKERS, parse=self._parse
        )
        try:
            return await self._refresh(progress, parsers)
        finally:
            await parsers.close()

    async def _refresh(self, progress: Progress | None, parsers: Parsers) -> RefreshReport:
        manifest = await self._storage.read_manifest()
        scan = await asyncio.to_thread(self._scan, manifest)
        intact = await self._storage.intact(manifest)
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
                entry = await self._index_file(
                    path, scan[path], manifest, path in only_embed, run, parsers
                )
            if entry is not None:
                manifest.files[path] = entry
            done += 1
            if progress:
                progress(done, len(work))
            if time.monotonic() - checkpointed >= CHECKPOINT_SECONDS:
                checkpointed = time.monotonic()
                await self._storage.checkpoint(manifest)

        try:
            async with asyncio.TaskGroup() as tasks:
                for path in work:
                    tasks.create_task(index(path))
        except ExceptionGroup as group:
            # Callers expect one error (disk full, ...); the other files were cancelled.
            raise group.exceptions[0] from None
        for path in removed:
            del manifest.files[path]
        await self._storage.publish(manifest)
        embedded = all(entry.vectors for entry in manifest.files.values())
        return RefreshReport(
            added=tuple(p for p in added if p not in run.failed),
            changed=tuple(p for p in changed if p not in run.failed),
            removed=tuple(removed),
            unchanged=tuple(unchanged),
            failed=tuple(sorted(run.failed)),
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
        self,
        path: str,
        found: _Found,
        manifest: Manifest,
        only_embed: bool,
        run: _Run,
        parsers: Parsers,
    ) -> Entry | None:
        """Parse (or, `only_embed`, reload) one file's chunks and embed them; None if unreadable,
        which leaves its previous version, if any, in the index."""
        try:
            if only_embed:
                chunks = await self._storage.read_chunks(path, manifest.files[path])
            else:
                chunks = await parsers.parse(found.source, path, found.sha256)
        except ParseTimeout as exc:
            log.warning("not indexing %s: %s", found.source, exc)
            run.failed.add(path)
            return None
        except Exception as exc:
            # Parsers raise anything; their messages hold no secrets and say what is wrong.
            log.warning("could not index %s: %s: %s", path, type(exc).__name__, exc)
            run.failed.add(path)
            return None
        if not only_embed:  # failing to write the index is not the document's fault: raise
            await self._storage.write_chunks(path, found.sha256, chunks)
        has_vectors = run.dense
        if run.dense:
            try:
                vectors = await self._embedder.passages([_embed_input(c) for c in chunks])
            except Exception as exc:
                log.warning("embedding the documents failed: %s", describe(exc))
                has_vectors = run.dense = False
                run.note = f"embedding failed ({describe(exc)}); retried next refresh"
            else:
                await self._storage.write_vectors(path, found.sha256, self._space, vectors)
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


def _embed_input(chunk: Chunk) -> EmbedInput:
    title = " / ".join(part for part in (chunk.path, chunk.context, chunk.heading or "") if part)
    return EmbedInput(title, chunk.text)
