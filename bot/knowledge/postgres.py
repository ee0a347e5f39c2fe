"""The knowledge index in PostgreSQL (DATABASE_URL), shared by every replica: versions, their
documents, chunks, vectors (pgvector) and full-text search (migrations/postgres/0002).

A refresh (`bot ingest` anywhere, or a replica at start) holds an advisory lock, so refreshes run
one after another across machines; it writes chunks and vectors for new and changed documents,
then a new version naming every document and points `knowledge_current` at it in one
transaction. Replicas ask for the current version id at most every VERSION_CHECK_SECONDS and load
a new one whole (REPEATABLE READ: one snapshot), so nobody restarts and nobody sees half an index.
The version before the current one is kept, so a replica still searching it by full text finds
its chunks until it notices the new one.

SQL outside bot/store on purpose: this is the index's storage, as bot/knowledge/files.py is
locally; it shares the store's database, driver and migrations only.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
from collections.abc import AsyncIterator, Hashable, Sequence
from typing import Any

import asyncpg
import numpy as np
from pgvector.asyncpg import register_vector

from bot.knowledge.chunking import Chunk
from bot.knowledge.embeddings import PassageVectors
from bot.knowledge.files import Entry, Manifest
from bot.knowledge.keywords import KeywordHit
from bot.knowledge.storage import Loaded, Parts
from bot.store.database import apply_migrations
from bot.store.postgres import PostgresDriver

log = logging.getLogger(__name__)

# How stale a replica's index may be after another process publishes one: one cheap query
# (the current version's id) per search at most this often.
VERSION_CHECK_SECONDS = 2.0
# Loading a new version (chunks, vectors, BM25 built anew) took 30 s at 100k chunks on 2 busy
# cores (bench/knowledge_keywords.py): questions wait at most this long for it, then are answered
# from the version loaded before.
RELOAD_WAIT_SECONDS = 1.0
POOL_SIZE = 4  # a search's full-text query, a refresh's writes and its lock's connection
# Held for a whole refresh (session-level advisory lock): any constant every replica shares.
INGEST_LOCK = 0x6B6E6F776C65646765 & 0x7FFF_FFFF_FFFF_FFFF  # "knowledge"

_CURRENT = (
    "SELECT v.id, v.embedding, v.dimensions FROM knowledge_current c "
    "JOIN knowledge_versions v ON v.id = c.version_id"
)
# Versions kept: the current one and the one before (see the module's docstring).
_DROP_OLD_VERSIONS = """
DELETE FROM knowledge_versions
WHERE id NOT IN (SELECT id FROM knowledge_versions ORDER BY id DESC LIMIT 2)
"""
_DROP_UNNAMED_CHUNKS = """
DELETE FROM knowledge_chunks c WHERE NOT EXISTS (
    SELECT 1 FROM knowledge_files f WHERE f.path = c.path AND f.sha256 = c.sha256)
"""
_DROP_UNNAMED_VECTORS = """
DELETE FROM knowledge_vectors x WHERE NOT EXISTS (
    SELECT 1 FROM knowledge_files f JOIN knowledge_versions v ON v.id = f.version_id
    WHERE f.path = x.path AND f.sha256 = x.sha256 AND v.embedding = x.space)
"""
# Full text: any word of the question may match (its lexemes OR-ed, as BM25 scores passages
# sharing any word); plainto_tsquery's AND would find nothing for most questions in full
# sentences. Its output is stemmed already: the 'simple' configuration reads it back unchanged.
_FULL_TEXT = """
SELECT c.id, ts_rank(c.search, q.query) AS score
FROM (SELECT to_tsquery('simple', replace(plainto_tsquery('english', $1)::text, '&', '|'))
      AS query) q,
     knowledge_chunks c
JOIN knowledge_files f ON f.path = c.path AND f.sha256 = c.sha256 AND f.version_id = $2
WHERE c.search @@ q.query
ORDER BY score DESC, c.id
LIMIT $3
"""


def space_key(space: dict[str, str] | None) -> str | None:
    """An embedder's space as the text stored with versions and vectors."""
    return json.dumps(space, sort_keys=True) if space is not None else None


class SharedStorage:
    """The index in the PostgreSQL database at `url`: `bot.knowledge.storage.Storage`."""

    check_every = VERSION_CHECK_SECONDS
    reload_wait: float | None = RELOAD_WAIT_SECONDS

    def __init__(self, url: str) -> None:
        self._url = url
        self._pool: Any = None
        self._opening = asyncio.Lock()
        self._read: Manifest | None = None  # the manifest this refresh started from
        self._dimensions: dict[str, int] = {}  # space -> dimensions of its stored vectors

    async def pool(self) -> Any:
        """The connection pool, opened (and the database migrated) on first use."""
        async with self._opening:
            if self._pool is None:
                # The store's migrations, under its lock: `bot ingest` may be the first to
                # reach a fresh database. Its driver's open() says why a database can't be reached.
                driver = await PostgresDriver.open(self._url)
                try:
                    await apply_migrations(driver)
                finally:
                    await driver.close()
                self._pool = await asyncpg.create_pool(
                    self._url, min_size=1, max_size=POOL_SIZE, init=register_vector
                )
            return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # Reading.

    async def stamp(self) -> Hashable:
        pool = await self.pool()
        version: int | None = await pool.fetchval("SELECT version_id FROM knowledge_current")
        return version

    async def load(self, space: dict[str, str]) -> Loaded:
        pool = await self.pool()
        async with (
            pool.acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            current = await connection.fetchrow(_CURRENT)
            if current is None:
                return Loaded({}, [], None)
            version = current["id"]
            rows = await connection.fetch(
                "SELECT c.id, c.path, c.heading, c.context, c.text FROM knowledge_files f "
                "JOIN knowledge_chunks c ON c.path = f.path AND c.sha256 = f.sha256 "
                "WHERE f.version_id = $1 ORDER BY f.path, c.position",
                version,
            )
            chunks = {
                row["id"]: Chunk(
                    row["id"], row["path"], row["heading"], row["context"], row["text"]
                )
                for row in rows
            }
            parts: Parts = []
            if current["embedding"] is not None and current["embedding"] == space_key(space):
                parts = await self._vectors(connection, version, current, chunks)
        return Loaded(chunks, parts, version)

    async def _vectors(
        self, connection: Any, version: int, current: Any, chunks: dict[str, Chunk]
    ) -> Parts:
        rows = await connection.fetch(
            "SELECT x.path, x.owner, x.embedding FROM knowledge_files f "
            "JOIN knowledge_vectors x ON x.path = f.path AND x.sha256 = f.sha256 "
            "AND x.space = $2 WHERE f.version_id = $1 AND f.vectors ORDER BY x.path, x.seq",
            version,
            current["embedding"],
        )
        ids: dict[str, list[str]] = {}
        for chunk in chunks.values():
            ids.setdefault(chunk.path, []).append(chunk.id)
        grouped: dict[str, tuple[list[int], list[Any]]] = {}
        for row in rows:
            owners, vectors = grouped.setdefault(row["path"], ([], []))
            owners.append(row["owner"])
            vectors.append(row["embedding"].to_numpy())
        parts: Parts = []
        for path, (owners, vectors) in grouped.items():
            matrix = np.stack(vectors).astype(np.float32, copy=False)
            if matrix.shape[1] != current["dimensions"]:
                # Never compared across spaces: the whole index goes keyword-only until redone.
                log.warning(
                    "vectors of %s have %d dimensions, the index's %s: dense search is off "
                    "until `bot ingest` embeds the documents again",
                    path,
                    matrix.shape[1],
                    current["dimensions"],
                )
                return []
            parts.append((ids.get(path, []), PassageVectors(matrix, np.asarray(owners, np.int32))))
        return parts

    def full_text(self, version: Hashable, candidates: int) -> FullText:
        """Keyword search of one version by PostgreSQL's full-text search."""
        return FullText(self, version, candidates)

    # Refreshing.

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        pool = await self.pool()
        async with pool.acquire() as connection:
            if not await connection.fetchval("SELECT pg_try_advisory_lock($1)", INGEST_LOCK):
                log.warning(
                    "another process is updating the shared knowledge index (`bot ingest`, or "
                    "a replica starting): waiting for it to finish, then doing what it left"
                )
                await connection.execute("SELECT pg_advisory_lock($1)", INGEST_LOCK)
            try:
                yield
            finally:
                await connection.execute("SELECT pg_advisory_unlock($1)", INGEST_LOCK)

    async def read_manifest(self) -> Manifest:
        pool = await self.pool()
        async with (
            pool.acquire() as connection,
            connection.transaction(isolation="repeatable_read"),
        ):
            current = await connection.fetchrow(_CURRENT)
            manifest = Manifest()
            if current is not None:
                manifest.embedding = json.loads(current["embedding"] or "null")
                rows = await connection.fetch(
                    "SELECT f.path, f.sha256, f.size, f.mtime_ns, f.vectors, "
                    "array_agg(c.id ORDER BY c.position) FILTER (WHERE c.id IS NOT NULL) AS ids "
                    "FROM knowledge_files f LEFT JOIN knowledge_chunks c "
                    "ON c.path = f.path AND c.sha256 = f.sha256 WHERE f.version_id = $1 "
                    "GROUP BY f.path, f.sha256, f.size, f.mtime_ns, f.vectors",
                    current["id"],
                )
                for row in rows:
                    manifest.files[row["path"]] = Entry(
                        row["sha256"], row["size"], row["mtime_ns"], list(row["ids"] or []),
                        row["vectors"],
                    )  # fmt: skip
        self._read = copy.deepcopy(manifest)
        return manifest

    async def intact(self, manifest: Manifest) -> dict[str, str]:
        # Chunks are deleted only once no kept version names their document.
        return {path: entry.sha256 for path, entry in manifest.files.items()}

    async def read_chunks(self, path: str, entry: Entry) -> list[Chunk]:
        pool = await self.pool()
        rows = await pool.fetch(
            "SELECT id, path, heading, context, text FROM knowledge_chunks "
            "WHERE path = $1 AND sha256 = $2 ORDER BY position",
            path,
            entry.sha256,
        )
        return [Chunk(r["id"], r["path"], r["heading"], r["context"], r["text"]) for r in rows]

    async def write_chunks(self, path: str, sha256: str, chunks: Sequence[Chunk]) -> None:
        records = [
            (c.id, path, sha256, n, c.heading, c.context, c.text) for n, c in enumerate(chunks)
        ]
        pool = await self.pool()
        async with pool.acquire() as connection, connection.transaction():
            # A refresh that died after writing them left the same rows (ids are content's).
            await connection.execute(
                "DELETE FROM knowledge_chunks WHERE path = $1 AND sha256 = $2", path, sha256
            )
            await connection.copy_records_to_table(
                "knowledge_chunks",
                records=records,
                columns=("id", "path", "sha256", "position", "heading", "context", "text"),
            )

    async def write_vectors(
        self, path: str, sha256: str, space: dict[str, str], vectors: PassageVectors
    ) -> None:
        key = space_key(space)
        assert key is not None
        pool = await self.pool()
        if len(vectors.vectors):
            await self._check_dimensions(pool, key, int(vectors.vectors.shape[1]))
        records = [
            (path, sha256, key, n, int(owner), vector)
            for n, (owner, vector) in enumerate(zip(vectors.owners, vectors.vectors, strict=True))
        ]
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute(
                "DELETE FROM knowledge_vectors WHERE path = $1 AND sha256 = $2 AND space = $3",
                path,
                sha256,
                key,
            )
            await connection.copy_records_to_table(
                "knowledge_vectors",
                records=records,
                columns=("path", "sha256", "space", "seq", "owner", "embedding"),
            )

    async def _check_dimensions(self, pool: Any, space: str, dimensions: int) -> None:
        """Vectors of one space all have one size: a model behind the same name that changed it
        is refused, not mixed in."""
        if space not in self._dimensions:
            stored = await pool.fetchval(
                "SELECT vector_dims(embedding) FROM knowledge_vectors WHERE space = $1 LIMIT 1",
                space,
            )
            self._dimensions[space] = stored if stored is not None else dimensions
        if self._dimensions[space] != dimensions:
            raise ValueError(
                f"the embedding model returned {dimensions}-dimension vectors where the index "
                f"holds {self._dimensions[space]}: set EMBED_MODEL back, or embed everything "
                "again under a new EMBED_MODEL name"
            )

    async def checkpoint(self, manifest: Manifest) -> None:
        # Chunks and vectors are stored as they are made; a version names them only at the end
        # (after a crash the next refresh parses those documents again).
        return None

    async def publish(self, manifest: Manifest) -> None:
        if manifest == self._read:
            return  # nothing changed: no new version for the replicas to load
        key = space_key(manifest.embedding)
        dimensions = self._dimensions.get(key) if key is not None else None
        pool = await self.pool()
        async with pool.acquire() as connection:
            async with connection.transaction():
                if key is not None and dimensions is None:
                    dimensions = await connection.fetchval(
                        "SELECT vector_dims(embedding) FROM knowledge_vectors "
                        "WHERE space = $1 LIMIT 1",
                        key,
                    )
                version = await connection.fetchval(
                    "INSERT INTO knowledge_versions (embedding, dimensions) VALUES ($1, $2) "
                    "RETURNING id",
                    key,
                    dimensions,
                )
                await connection.copy_records_to_table(
                    "knowledge_files",
                    records=[
                        (version, path, e.sha256, e.size, e.mtime_ns, e.vectors)
                        for path, e in manifest.files.items()
                    ],
                    columns=("version_id", "path", "sha256", "size", "mtime_ns", "vectors"),
                )
                await connection.execute(
                    "INSERT INTO knowledge_current (version_id) VALUES ($1) ON CONFLICT "
                    "(singleton) DO UPDATE SET version_id = excluded.version_id",
                    version,
                )
            # After the switch, in a transaction of its own: what no kept version names.
            async with connection.transaction():
                await connection.execute(_DROP_OLD_VERSIONS)
                await connection.execute(_DROP_UNNAMED_CHUNKS)
                await connection.execute(_DROP_UNNAMED_VECTORS)
        self._read = copy.deepcopy(manifest)


class FullText:
    """Keyword search by PostgreSQL full-text search over one version's chunks
    (KEYWORD_SEARCH=fulltext): nothing held in the replica's memory, one query per search."""

    def __init__(self, storage: SharedStorage, version: Hashable, candidates: int) -> None:
        self._storage = storage
        self._version = version
        self._candidates = candidates

    async def find(self, query: str) -> list[KeywordHit]:
        pool = await self._storage.pool()
        rows = await pool.fetch(_FULL_TEXT, query, self._version, self._candidates)
        return [KeywordHit(row["id"], float(row["score"])) for row in rows if row["score"] > 0]
