"""Where the knowledge index lives, as `Knowledge` and the refresh see it: files under
DATA_DIR/index (`LocalStorage`, the default) or PostgreSQL at DATABASE_URL, shared by replicas
(`bot.knowledge.postgres.SharedStorage`).

Both keep the same things (a manifest of documents, their chunks and vectors) and make the same
promise: a search sees a whole index, the one before a refresh or the one after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.knowledge.chunking import Chunk
from bot.knowledge.embeddings import PassageVectors
from bot.knowledge.files import Entry, IndexFiles, Manifest

log = logging.getLogger(__name__)

Parts = list[tuple[list[str], PassageVectors]]  # (chunk ids, their vectors) per document


@dataclass(frozen=True)
class Loaded:
    """One whole index as read: its chunks, the vectors of those in the embedder's space, and the
    stamp of what it was read from (it changes when another process publishes a new index)."""

    chunks: dict[str, Chunk]
    parts: Parts
    stamp: Hashable


class Storage(Protocol):
    """What the index is kept in. Reading: `stamp`, `load`; refreshing (one process at a time,
    inside `exclusive`): `read_manifest` ... `publish`."""

    # Seconds a loaded index is used before `stamp` is asked again (0: every search).
    check_every: float
    # Seconds a search waits for a new index to load before answering from the one it has
    # (None: until it is loaded).
    reload_wait: float | None

    async def stamp(self) -> Hashable: ...

    async def load(self, space: dict[str, str]) -> Loaded: ...

    def exclusive(self) -> contextlib.AbstractAsyncContextManager[None]: ...

    async def read_manifest(self) -> Manifest: ...

    async def intact(self, manifest: Manifest) -> dict[str, str]:
        """path -> sha256 of the entries whose chunks are stored; an entry whose vectors are
        gone is marked as without them (the refresh embeds it again)."""
        ...

    async def read_chunks(self, path: str, entry: Entry) -> list[Chunk]: ...

    async def write_chunks(self, path: str, sha256: str, chunks: Sequence[Chunk]) -> None: ...

    async def write_vectors(
        self, path: str, sha256: str, space: dict[str, str], vectors: PassageVectors
    ) -> None: ...

    async def checkpoint(self, manifest: Manifest) -> None:
        """A long refresh's progress so far, kept against a crash (where the storage can)."""
        ...

    async def publish(self, manifest: Manifest) -> None:
        """Make `manifest` the index searches use, whole, and drop what it no longer names."""
        ...

    async def close(self) -> None: ...


class LocalStorage:
    """The index files under DATA_DIR/index (bot.knowledge.files), read in worker threads. Any
    number of processes on this machine may search them; the manifest's stat is the stamp."""

    check_every = 0.0  # a stat() per search: cheap, and a new manifest is seen at once
    reload_wait: float | None = None  # as before the shared index: the next search has it

    def __init__(self, files: IndexFiles) -> None:
        self.files = files

    async def stamp(self) -> Hashable:
        return await asyncio.to_thread(self.files.stamp)

    async def load(self, space: dict[str, str]) -> Loaded:
        return await asyncio.to_thread(self._load, space)

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        # One refresh at a time within the process (Knowledge's lock); across processes the
        # manifest is replaced whole, so a reader never sees half of one.
        yield

    async def read_manifest(self) -> Manifest:
        return await asyncio.to_thread(self.files.read_manifest)

    async def intact(self, manifest: Manifest) -> dict[str, str]:
        return await asyncio.to_thread(self.files.intact, manifest)

    async def read_chunks(self, path: str, entry: Entry) -> list[Chunk]:
        return await asyncio.to_thread(self.files.read_chunks, path, entry)

    async def write_chunks(self, path: str, sha256: str, chunks: Sequence[Chunk]) -> None:
        await asyncio.to_thread(self.files.write_chunks, path, sha256, chunks)

    async def write_vectors(
        self, path: str, sha256: str, space: dict[str, str], vectors: PassageVectors
    ) -> None:
        await asyncio.to_thread(self.files.write_vectors, path, sha256, vectors)

    async def checkpoint(self, manifest: Manifest) -> None:
        await asyncio.to_thread(self.files.write_manifest, manifest)

    async def publish(self, manifest: Manifest) -> None:
        await asyncio.to_thread(self.files.write_manifest, manifest)
        await asyncio.to_thread(self.files.remove_unlisted, manifest)

    async def close(self) -> None:
        return None

    def _load(self, space: dict[str, str]) -> Loaded:
        stamp = self.files.stamp()
        manifest = self.files.read_manifest()
        chunks: dict[str, Chunk] = {}
        parts: Parts = []
        same_space = manifest.embedding == space
        for path, entry in manifest.files.items():
            try:
                file_chunks = self.files.read_chunks(path, entry)
            except (OSError, ValueError, KeyError) as exc:
                log.warning(
                    "index files of %s unreadable (%s); `bot ingest` rebuilds them", path, exc
                )
                continue
            chunks.update((chunk.id, chunk) for chunk in file_chunks)
            if entry.vectors and same_space and file_chunks:
                try:
                    parts.append(
                        ([c.id for c in file_chunks], self.files.read_vectors(path, entry))
                    )
                except (OSError, ValueError, KeyError) as exc:
                    # Its passages stay findable by keyword. The file is derived data: without it
                    # the next refresh embeds the document again (see IndexFiles.intact).
                    log.warning(
                        "vectors of %s unreadable (%s); `bot ingest` redoes them", path, exc
                    )
                    self.files.vectors_path(path, entry.sha256).unlink(missing_ok=True)
        return Loaded(chunks, parts, stamp)
