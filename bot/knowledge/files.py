"""The knowledge index's files under DATA_DIR/index: a manifest (document -> content hash -> chunk
ids), one chunk file and one vector file per indexed version of a document, each written
atomically, and the saved BM25 index of the current chunks (`keywords/<fingerprint>/`, so a
start-up loads it, not rebuilds).

Chunk files are written before the manifest that names them and deleted only after it stops
naming them, so whatever moment a crash picks, the manifest on disk names complete files. JSON on
purpose: SQL belongs to bot/store.py, and these files are rewritten whole, never queried.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bot.knowledge.chunking import Chunk
from bot.knowledge.embeddings import PassageVectors

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"
CHUNKS_DIRNAME = "chunks"
VECTORS_DIRNAME = "vectors"
KEYWORDS_DIRNAME = "keywords"


@dataclass
class Entry:
    """One indexed document: its content hash, stat (to skip hashing), chunks and vector state."""

    sha256: str
    size: int
    mtime_ns: int
    chunks: list[str]
    vectors: bool  # its vector file holds its chunks' embeddings in the manifest's space


@dataclass
class Manifest:
    files: dict[str, Entry] = field(default_factory=dict)
    embedding: dict[str, str] | None = None  # the embedder's space the vectors were made in

    def to_bytes(self) -> bytes:
        data = {
            "version": MANIFEST_VERSION,
            "embedding": self.embedding,
            # vars, not asdict: asdict deep-copies every chunk list, a third of a 100k-chunk
            # ingest's time when this ran every 50 files.
            "files": {path: vars(entry) for path, entry in sorted(self.files.items())},
        }
        return json.dumps(data, indent=1).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Manifest:
        data = json.loads(raw)
        if data.get("version") != MANIFEST_VERSION:
            raise ValueError(f"manifest version {data.get('version')!r}")
        files = {path: Entry(**entry) for path, entry in data["files"].items()}
        return cls(files=files, embedding=data.get("embedding"))


class IndexFiles:
    """The manifest and chunk files under one directory; synchronous, run in worker threads."""

    def __init__(self, root: Path) -> None:
        self._root = root

    @property
    def manifest_path(self) -> Path:
        return self._root / MANIFEST_NAME

    def stamp(self) -> tuple[int, int] | None:
        """Changes whenever the manifest is replaced (by this process or another one)."""
        try:
            stat = self.manifest_path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_ino, stat.st_mtime_ns)

    def read_manifest(self) -> Manifest:
        try:
            return Manifest.from_bytes(self.manifest_path.read_bytes())
        except FileNotFoundError:
            return Manifest()
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("index manifest unreadable (%s): the index will be rebuilt", exc)
            return Manifest()

    def write_manifest(self, manifest: Manifest) -> None:
        write_atomic(self.manifest_path, manifest.to_bytes())

    def chunks_path(self, path: str, sha256: str) -> Path:
        name = hashlib.sha256(f"{path}\0{sha256}".encode()).hexdigest()
        return self._root / CHUNKS_DIRNAME / f"{name}.json"

    def write_chunks(self, path: str, sha256: str, chunks: Sequence[Chunk]) -> None:
        payload = {"path": path, "sha256": sha256, "chunks": [c.to_json() for c in chunks]}
        write_atomic(self.chunks_path(path, sha256), json.dumps(payload).encode())

    def read_chunks(self, path: str, entry: Entry) -> list[Chunk]:
        data = json.loads(self.chunks_path(path, entry.sha256).read_bytes())
        return [Chunk.from_json(item) for item in data["chunks"]]

    def vectors_path(self, path: str, sha256: str) -> Path:
        return (
            self.chunks_path(path, sha256).parent.parent
            / VECTORS_DIRNAME
            / (self.chunks_path(path, sha256).stem + ".npz")
        )

    def write_vectors(self, path: str, sha256: str, vectors: PassageVectors) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, vectors=vectors.vectors, owners=vectors.owners)
        write_atomic(self.vectors_path(path, sha256), buffer.getvalue())

    def read_vectors(self, path: str, entry: Entry) -> PassageVectors:
        # No pickles: a planted vector file must not run code.
        try:
            with np.load(self.vectors_path(path, entry.sha256), allow_pickle=False) as saved:
                vectors = np.asarray(saved["vectors"], dtype=np.float32)
                owners = np.asarray(saved["owners"], dtype=np.int32)
        except zipfile.BadZipFile as exc:  # damaged on disk: the caller re-embeds
            raise ValueError(f"damaged vector file ({exc})") from None
        if vectors.ndim != 2 or len(owners) != len(vectors):
            raise ValueError("malformed vector file")
        return PassageVectors(vectors, owners)

    def intact(self, manifest: Manifest) -> dict[str, str]:
        """path -> sha256 of the manifest's entries whose chunk file is on disk. An entry whose
        vector file went missing is marked as without vectors, so the refresh embeds it again."""
        for path, entry in manifest.files.items():
            if entry.vectors and not self.vectors_path(path, entry.sha256).is_file():
                entry.vectors = False
        return {
            path: entry.sha256
            for path, entry in manifest.files.items()
            if self.chunks_path(path, entry.sha256).is_file()
        }

    def remove_unlisted(self, manifest: Manifest) -> None:
        """Delete chunk and vector files the manifest no longer names (old versions, deleted
        documents)."""
        live = {self.chunks_path(path, entry.sha256) for path, entry in manifest.files.items()}
        live |= {self.vectors_path(path, e.sha256) for path, e in manifest.files.items()}
        for pattern in (f"{CHUNKS_DIRNAME}/*.json", f"{VECTORS_DIRNAME}/*.npz"):
            for stale in self._root.glob(pattern):
                if stale not in live:
                    stale.unlink(missing_ok=True)

    def keywords_path(self, fingerprint: str) -> Path:
        """Where the saved BM25 index of one chunk set lives (see `KeywordIndex.fingerprint`)."""
        return self._root / KEYWORDS_DIRNAME / fingerprint

    def remove_keyword_indexes(self, keep: str | None) -> None:
        """Delete saved BM25 indexes but the one named `keep` (they are of older chunk sets)."""
        folder = self._root / KEYWORDS_DIRNAME
        if not folder.is_dir():
            return
        for saved in folder.iterdir():
            # A dot-name is another process's save in progress.
            if saved.name != keep and not saved.name.startswith(".") and saved.is_dir():
                shutil.rmtree(saved, ignore_errors=True)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` in one step: readers and crashes see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
