"""The two searches over the chunks, and how their rankings are merged: BM25 keyword search (bm25s),
Qdrant local-mode vector search (through llama-index), and reciprocal rank fusion.

Both are synchronous (CPU work or a local database) and run in worker threads, called by
`bot.knowledge`, which owns what gets indexed and when.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import bm25s
import numpy as np
import Stemmer
from llama_index.core.schema import BaseNode, TextNode
from llama_index.core.vector_stores.types import VectorStoreQuery

if TYPE_CHECKING:  # imported when first used: a keyword-only bot starts a second sooner
    from llama_index.vector_stores.qdrant import QdrantVectorStore

LANGUAGE = "english"
# Words too common to tell passages apart; questions' "how do I" must not rank passages.
STOPWORDS = list(bm25s.stopwords.STOPWORDS_EN_PLUS)
# Words that say nothing about what a question is about; they don't count towards its coverage.
QUESTION_STOPWORDS = (
    *STOPWORDS,
    *("please", "tell", "explain", "want", "need", "know", "could", "would", "may", "might"),
    *("anyone", "someone", "something", "thing", "way", "possible", "able", "also", "get", "us"),
)
# Words are runs of two or more word characters (llama-index's BM25Retriever default, kept).
WORD_PATTERN = r"(?u)\b\w\w+\b"
# Bump when a chunk's indexed text or its tokenizing changes: it makes saved indexes stale.
KEYWORD_INDEX_VERSION = 1
IDS_NAME = "ids.json"  # beside a saved BM25 index: the chunk id of each of its documents, in order
# Reciprocal rank fusion constant (Cormack et al. 2009): a passage scores sum(1 / (RRF_K + rank)).
RRF_K = 60
COLLECTION = "knowledge"

log = logging.getLogger(__name__)

# bm25s sets its logger to DEBUG when imported, which would put a line per index build in the log.
logging.getLogger("bm25s").setLevel(logging.WARNING)


@dataclass(frozen=True)
class KeywordHit:
    chunk_id: str
    score: float  # raw BM25
    coverage: float  # share of the question's informative words (IDF-weighted) the passage has


class KeywordIndex:
    """BM25 over chunk texts: built from the persisted chunks, or loaded from where `save` put it
    (a process starting on an indexed folder loads it instead of tokenizing every chunk again)."""

    def __init__(self, texts: Sequence[tuple[str, str]], candidates: int) -> None:
        """`texts`: (chunk id, indexed text) pairs; `candidates`: hits a search returns at most."""
        if not texts:
            raise ValueError("a keyword index needs at least one passage")
        stemmer = Stemmer.Stemmer(LANGUAGE)
        tokens = bm25s.tokenize(
            [text for _, text in texts],
            stopwords=STOPWORDS,
            stemmer=stemmer,
            token_pattern=WORD_PATTERN,
            show_progress=False,
        )
        bm25 = bm25s.BM25()
        bm25.index(tokens, show_progress=False)
        self._setup([chunk_id for chunk_id, _ in texts], bm25, stemmer, candidates)

    def _setup(
        self, ids: Sequence[str], bm25: bm25s.BM25, stemmer: Stemmer.Stemmer, candidates: int
    ) -> None:
        self._ids = list(ids)
        self._bm25 = bm25
        self._stemmer = stemmer
        self._candidates = min(candidates, len(self._ids))

    @staticmethod
    def fingerprint(ids: Sequence[str]) -> str:
        """Names the index of these chunks (ids change with their document's content) built this
        way; a saved index under another name is of other chunks or another tokenizer."""
        digest = hashlib.sha256()
        config = [KEYWORD_INDEX_VERSION, LANGUAGE, WORD_PATTERN, STOPWORDS]
        digest.update(json.dumps(config).encode())
        for chunk_id in ids:
            digest.update(b"\0" + chunk_id.encode())
        return digest.hexdigest()

    @classmethod
    def load(cls, directory: Path, ids: Sequence[str], candidates: int) -> KeywordIndex | None:
        """The index `save` wrote to `directory` for exactly these chunk ids, in this order; None
        when there is none or it does not fit (then build it)."""
        try:
            saved_ids = json.loads((directory / IDS_NAME).read_bytes())
            if saved_ids != list(ids):
                return None
            bm25 = bm25s.BM25.load(str(directory), load_corpus=False, show_progress=False)
        except FileNotFoundError:
            return None
        except Exception as exc:  # a cache: whatever is wrong with it, building is the cure
            log.warning("saved keyword index unreadable (%s): rebuilding it", type(exc).__name__)
            return None
        if int(bm25.scores["num_docs"]) != len(ids):
            return None
        index = cls.__new__(cls)
        index._setup(ids, bm25, Stemmer.Stemmer(LANGUAGE), candidates)
        return index

    def save(self, directory: Path) -> None:
        """Write the index to `directory` whole: it appears complete or not at all."""
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
        try:
            self._bm25.save(str(staging), show_progress=False)
            (staging / IDS_NAME).write_text(json.dumps(self._ids))
            try:
                staging.rename(directory)
            except OSError:
                if not directory.is_dir():  # not another process having saved it first
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def search(self, query: str) -> list[KeywordHit]:
        """Passages sharing at least one informative word with `query`, best BM25 score first."""
        bm25 = self._bm25
        terms = self._terms(query)
        if not terms:
            return []
        documents = int(bm25.scores["num_docs"])
        weights: dict[str, float] = {}
        containing: dict[str, np.ndarray] = {}
        for term in terms:
            frequency = 0
            if term in bm25.vocab_dict:
                containing[term] = bm25.get_scores([term]) > 0
                frequency = int(containing[term].sum())
            weights[term] = math.log(1 + (documents - frequency + 0.5) / (frequency + 0.5))
        if not containing:
            return []
        total = sum(weights.values())
        # Tokenized as llama-index's BM25Retriever did: stop words stay, the index lacks them.
        tokens = bm25s.tokenize(
            query, stemmer=self._stemmer, token_pattern=WORD_PATTERN, show_progress=False
        )
        positions, scores = bm25.retrieve(tokens, k=self._candidates, show_progress=False)
        hits: list[KeywordHit] = []
        for position, score in zip(positions[0], scores[0], strict=True):
            covered = sum(weights[t] for t, has in containing.items() if has[position])
            if covered > 0:
                hits.append(KeywordHit(self._ids[int(position)], float(score), covered / total))
        return hits

    def _terms(self, query: str) -> list[str]:
        tokens = bm25s.tokenize(
            query,
            stopwords=list(QUESTION_STOPWORDS),
            stemmer=self._stemmer,
            return_ids=False,
            show_progress=False,
        )
        return list(dict.fromkeys(tokens[0])) if tokens else []


class VectorsBusy(RuntimeError):
    """Another process holds the Qdrant local-mode storage (it allows one)."""


class VectorIndex:
    """Chunk embeddings in Qdrant local mode under one directory; the ids are the chunk ids."""

    def __init__(self, path: Path) -> None:
        from qdrant_client import QdrantClient

        path.mkdir(parents=True, exist_ok=True)
        try:
            self._client = QdrantClient(path=str(path))
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                raise VectorsBusy(str(exc)) from exc
            raise
        # The local client is plain Python over SQLite: one caller at a time.
        self._lock = threading.Lock()
        self._store = self._new_store()

    def _new_store(self) -> QdrantVectorStore:
        from llama_index.vector_stores.qdrant import QdrantVectorStore

        # No payload index: local mode ignores them and warns.
        return QdrantVectorStore(
            client=self._client, collection_name=COLLECTION, index_doc_id=False
        )

    def add(self, ids: Sequence[str], embeddings: Sequence[Sequence[float]]) -> None:
        nodes: list[BaseNode] = [
            TextNode(id_=chunk_id, text="", embedding=list(vector))
            for chunk_id, vector in zip(ids, embeddings, strict=True)
        ]
        with self._lock:
            self._store.add(nodes)

    def query(self, vector: Sequence[float], limit: int) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity), most similar first."""
        with self._lock:
            if not self._client.collection_exists(COLLECTION):
                return []
            result = self._store.query(
                VectorStoreQuery(query_embedding=list(vector), similarity_top_k=limit)
            )
        return list(zip(result.ids or [], result.similarities or [], strict=False))

    def ids(self) -> set[str]:
        with self._lock:
            if not self._client.collection_exists(COLLECTION):
                return set()
            # One page: local mode sorts every id for each page it serves, so paging 1,000 at a
            # time made this quadratic (20-odd seconds of a 100k-chunk start-up).
            total = self._client.count(COLLECTION, exact=True).count
            points, _ = self._client.scroll(
                COLLECTION, limit=max(total, 1), with_payload=False, with_vectors=False
            )
        return {str(point.id) for point in points}

    def delete(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        if ids:
            with self._lock:
                self._store.delete_nodes(node_ids=ids)

    def reset(self) -> None:
        """Drop every vector (the embedding model changed)."""
        with self._lock:
            if self._client.collection_exists(COLLECTION):
                self._client.delete_collection(COLLECTION)
            self._store = self._new_store()

    def close(self) -> None:
        with self._lock:
            self._client.close()


def fuse(rankings: Iterable[Sequence[str]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Reciprocal rank fusion of id rankings (best first): (id, fused score), best first."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: pair[1], reverse=True)
