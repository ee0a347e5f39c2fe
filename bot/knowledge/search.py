"""How a question's passages are chosen from the two searches, and how sure the bot is of them.

Keyword (BM25) and dense hits are fused by reciprocal rank; the fused candidates are then rescored
by their cosine and their share of the best BM25 score, which the eval (`python -m bench quality`)
showed finds the answering passage more often than either search or plain fusion. No cutoff drops
a passage here: with a key the model judges whether the passages answer the question. Without
one the bot prints passages, so `Evidence.relevant` is its own calibrated judgement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from bot.knowledge.keywords import KeywordHit, fuse
from bot.knowledge.vectors import DenseResult

Method = Literal["keyword", "dense", "fused", "rescored"]
METHODS: tuple[Method, ...] = ("keyword", "dense", "fused", "rescored")
DEFAULT_METHOD: Method = "rescored"

# Fused candidates that are rescored; the rest keep their fused order below them.
RESCORE_POOL = 40
# A rescored passage's score: DENSE_WEIGHT * cosine + (1 - DENSE_WEIGHT) * BM25, each spread over
# 0..1 across the pool (chosen on the eval's dev questions).
DENSE_WEIGHT = 0.8

# The keyless relevance gate, calibrated on the eval's dev questions over two corpora (`python -m
# bench quality`; README, "Answer quality"). Passages are shown when the best one is plainly about
# the question (cosine COSINE_SURE), or when it is close enough (COSINE_MIN: off-topic questions
# score below it against any passage) and either stands out from the rest of the corpus (Z_MIN
# standard deviations above the question's mean cosine over every passage) or shares rare terms
# with the question (a BM25 score of KEYWORD_MIN). Raw cosine alone does not tell "about the docs
# but not answered by them" from "answered", and z alone fails a small corpus on one topic, where
# every passage is close to every on-topic question.
COSINE_SURE = 0.5
COSINE_MIN = 0.2
Z_MIN = 3.0
KEYWORD_MIN = 3.0
# Below this many passages a spread and an IDF mean little (two passages always give z = 1): a
# small corpus shows passages on the cosine alone.
SMALL_CORPUS = 30
# Without vectors (EMBED_PROVIDER=openai and no key to embed the question) only BM25 is left.
KEYWORD_ONLY_MIN = 6.0


@dataclass(frozen=True)
class Evidence:
    """What the searches say about how well the corpus covers a question."""

    z: float | None  # best passage's cosine in standard deviations over the mean; None: no dense
    cosine: float | None  # best passage's cosine
    keyword: float  # best BM25 score (0.0 when no word of the question is in the corpus)
    passages: int = 0  # in the corpus

    @property
    def relevant(self) -> bool:
        if self.z is None or self.cosine is None:
            return self.keyword >= KEYWORD_ONLY_MIN
        if self.cosine >= COSINE_SURE:
            return True
        if self.passages < SMALL_CORPUS:
            return self.cosine >= COSINE_MIN
        return self.cosine >= COSINE_MIN and (self.z >= Z_MIN or self.keyword >= KEYWORD_MIN)

    def features(self) -> dict[str, float | None]:
        return {"z": self.z, "cosine": self.cosine, "keyword": self.keyword}


@dataclass(frozen=True)
class Ranked:
    """A question's candidates, best first, with the score each was ranked by."""

    ranking: list[tuple[str, float]]
    evidence: Evidence


def rank(
    keyword_hits: Sequence[KeywordHit],
    dense: DenseResult | None,
    *,
    method: Method = DEFAULT_METHOD,
) -> Ranked:
    """Order the candidates of both searches by `method` (dense ones fall back to keyword when
    there is no dense result)."""
    keyword_ranking = [(hit.chunk_id, hit.score) for hit in keyword_hits]
    evidence = _evidence(keyword_hits, dense)
    if dense is None or not dense.hits:
        return Ranked(keyword_ranking, evidence)
    if method == "keyword":
        return Ranked(keyword_ranking, evidence)
    if method == "dense":
        return Ranked(list(dense.hits), evidence)
    fused = fuse([[chunk_id for chunk_id, _ in keyword_ranking], [c for c, _ in dense.hits]])
    if method == "fused":
        return Ranked(fused, evidence)
    return Ranked(_rescored(fused, keyword_hits, dense), evidence)


def _rescored(
    fused: list[tuple[str, float]], keyword_hits: Sequence[KeywordHit], dense: DenseResult
) -> list[tuple[str, float]]:
    pool, rest = fused[:RESCORE_POOL], fused[RESCORE_POOL:]
    keyword = _spread([hit.chunk_id for hit in keyword_hits], [h.score for h in keyword_hits])
    ids = [chunk_id for chunk_id, _ in pool]
    cosine = _spread(ids, [dense.scores.get(chunk_id, 0.0) for chunk_id in ids])
    scored = [
        (
            chunk_id,
            DENSE_WEIGHT * cosine.get(chunk_id, 0.0)
            + (1 - DENSE_WEIGHT) * keyword.get(chunk_id, 0.0),
        )
        for chunk_id in ids
    ]
    scored.sort(key=lambda pair: pair[1], reverse=True)
    floor = min((score for _, score in scored), default=0.0)
    # Below the pool, fused order; scores kept under the pool's so the order reads true.
    return scored + [(chunk_id, floor - 1 - n) for n, (chunk_id, _) in enumerate(rest)]


def _spread(ids: Sequence[str], scores: Sequence[float]) -> dict[str, float]:
    """Scores mapped onto 0..1 (lowest to highest): cosines crowd into a narrow band and BM25 has
    no fixed scale, so only their positions within one question's candidates are comparable."""
    if not scores:
        return {}
    low, high = min(scores), max(scores)
    width = high - low
    return {i: (s - low) / width if width > 0 else 1.0 for i, s in zip(ids, scores, strict=True)}


def _evidence(keyword_hits: Sequence[KeywordHit], dense: DenseResult | None) -> Evidence:
    keyword = keyword_hits[0].score if keyword_hits else 0.0
    if dense is None or not dense.hits:
        return Evidence(None, None, keyword)
    cosine = dense.hits[0][1]
    z = (cosine - dense.mean) / dense.spread if dense.spread > 0 else 0.0
    return Evidence(z, cosine, keyword, dense.count)
