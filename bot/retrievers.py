"""The two searches over the chunks, and how their rankings are merged: BM25 keyword search (bm25s
through llama-index), Qdrant local-mode vector search, and reciprocal rank fusion.

Both are synchronous (CPU work or a local database) and run in worker threads, called by
`bot.knowledge`, which owns what gets indexed and when.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import bm25s
import numpy as np
import Stemmer
from llama_index.core.schema import BaseNode, TextNode
from llama_index.core.vector_stores.types import VectorStoreQuery
from llama_index.retrievers.bm25 import BM25Retriever

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
# Reciprocal rank fusion constant (Cormack et al. 2009): a passage scores sum(1 / (RRF_K + rank)).
RRF_K = 60
COLLECTION = "knowledge"
_SCROLL_PAGE = 1000

# bm25s sets its logger to DEBUG when imported, which would put a line per index build in the log.
logging.getLogger("bm25s").setLevel(logging.WARNING)


@dataclass(frozen=True)
class KeywordHit:
    chunk_id: str
    score: float  # raw BM25
    coverage: float  # share of the question's informative words (IDF-weighted) the passage has


class KeywordIndex:
    """BM25 over chunk texts, built in memory from the persisted chunks (cheap: see the report)."""

    def __init__(self, texts: Sequence[tuple[str, str]], candidates: int) -> None:
        """`texts`: (chunk id, indexed text) pairs; `candidates`: hits a search returns at most."""
        if not texts:
            raise ValueError("a keyword index needs at least one passage")
        self._stemmer = Stemmer.Stemmer(LANGUAGE)
        self._retriever = BM25Retriever.from_defaults(
            nodes=[TextNode(id_=chunk_id, text=text) for chunk_id, text in texts],
            stemmer=self._stemmer,
            language=cast(str, STOPWORDS),  # handed to bm25s.tokenize, which takes a list too
            similarity_top_k=min(candidates, len(texts)),
        )
        self._positions = {chunk_id: index for index, (chunk_id, _) in enumerate(texts)}

    def search(self, query: str) -> list[KeywordHit]:
        """Passages sharing at least one informative word with `query`, best BM25 score first."""
        bm25 = self._retriever.bm25
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
        hits: list[KeywordHit] = []
        for found in self._retriever.retrieve(query):
            position = self._positions[found.node.node_id]
            covered = sum(weights[t] for t, has in containing.items() if has[position])
            if covered > 0:
                hits.append(
                    KeywordHit(found.node.node_id, float(found.score or 0.0), covered / total)
                )
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
        found: set[str] = set()
        with self._lock:
            if not self._client.collection_exists(COLLECTION):
                return found
            offset = None
            while True:
                points, offset = self._client.scroll(
                    COLLECTION, limit=_SCROLL_PAGE, offset=offset, with_payload=False
                )
                found.update(str(point.id) for point in points)
                if offset is None:
                    return found

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
