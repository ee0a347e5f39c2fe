"""Keyword search over the chunks (BM25, bm25s) and reciprocal rank fusion of rankings.

Synchronous CPU work, run in worker threads by `bot.knowledge.index`, which owns what gets indexed
and when. `Keywords` is what a search asks of keyword search: this in-memory BM25, or PostgreSQL's
full-text search over the shared index (`bot.knowledge.postgres.FullText`, KEYWORD_SEARCH=fulltext).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import bm25s
import Stemmer

LANGUAGE = "english"
# Words too common to tell passages apart; questions' "how do I" must not rank passages.
STOPWORDS = list(bm25s.stopwords.STOPWORDS_EN_PLUS)
# Words are runs of two or more word characters (llama-index's BM25Retriever default, kept).
WORD_PATTERN = r"(?u)\b\w\w+\b"
# Bump when a chunk's indexed text or its tokenizing changes: it makes saved indexes stale.
KEYWORD_INDEX_VERSION = 1
IDS_NAME = "ids.json"  # beside a saved BM25 index: the chunk id of each of its documents, in order
# Reciprocal rank fusion constant (Cormack et al. 2009): a passage scores sum(1 / (RRF_K + rank)).
RRF_K = 60

log = logging.getLogger(__name__)

# bm25s sets its logger to DEBUG when imported, which would put a line per index build in the log.
logging.getLogger("bm25s").setLevel(logging.WARNING)


@dataclass(frozen=True)
class KeywordHit:
    chunk_id: str
    score: float  # raw BM25: orders one query's hits, means nothing across queries


class Keywords(Protocol):
    async def find(self, query: str) -> list[KeywordHit]:
        """Passages sharing at least one indexed word with `query`, best first."""
        ...


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

    async def find(self, query: str) -> list[KeywordHit]:
        return await asyncio.to_thread(self.search, query)

    def search(self, query: str) -> list[KeywordHit]:
        """Passages sharing at least one indexed word with `query`, best BM25 score first."""
        words = bm25s.tokenize(
            query,
            stopwords=STOPWORDS,
            stemmer=self._stemmer,
            token_pattern=WORD_PATTERN,
            return_ids=False,
            show_progress=False,
        )
        # Words the corpus never uses score nothing: leave them out ("INC-4412", "hey").
        known = [word for word in (words[0] if words else []) if word in self._bm25.vocab_dict]
        if not known:
            return []
        positions, scores = self._bm25.retrieve([known], k=self._candidates, show_progress=False)
        return [
            KeywordHit(self._ids[int(position)], float(score))
            for position, score in zip(positions[0], scores[0], strict=True)
            if score > 0
        ]


def fuse(rankings: Iterable[Sequence[str]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Reciprocal rank fusion of id rankings (best first): (id, fused score), best first."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: pair[1], reverse=True)
