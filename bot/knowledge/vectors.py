"""Dense search over the passages' vectors: one float32 matrix in memory, searched by a dot product.

Exact, not approximate: at 100k passages one matrix product takes milliseconds on two cores, less
than an approximate index's bookkeeping, and any number of processes can read the saved vectors.
A passage with several vectors (windows of a long passage) scores by its best one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bot.knowledge.embeddings import PassageVectors, Vectors


@dataclass(frozen=True)
class DenseResult:
    """The best passages for one query, and how the query scored against every passage.

    `mean` and `spread` (standard deviation) of the per-passage scores let a caller tell a question
    that stands out against this corpus from one that is about as close to everything."""

    hits: list[tuple[str, float]]  # (passage id, cosine of its best vector), best first
    scores: dict[str, float]  # the cosine of every passage in `hits` and of every one asked for
    mean: float
    spread: float
    count: int  # passages scored


class VectorIndex:
    """The vectors of a set of passages, in passage order; immutable once built."""

    def __init__(self, parts: Sequence[tuple[Sequence[str], PassageVectors]]) -> None:
        """`parts`: (passage ids, their vectors) per document, in any order."""
        ids: list[str] = []
        blocks: list[Vectors] = []
        starts: list[npt.NDArray[np.int64]] = []
        rows = 0
        for passage_ids, part in parts:
            if not passage_ids:
                continue
            counts = np.bincount(part.owners, minlength=len(passage_ids))
            if counts.min(initial=1) == 0 or len(counts) != len(passage_ids):
                raise ValueError("every passage needs at least one vector")
            starts.append(rows + np.concatenate(([0], np.cumsum(counts)[:-1])))
            ids.extend(passage_ids)
            blocks.append(part.vectors)
            rows += len(part.vectors)
        self._ids = ids
        self._position = {passage_id: n for n, passage_id in enumerate(ids)}
        self._matrix = np.concatenate(blocks) if blocks else np.zeros((0, 0), dtype=np.float32)
        self._starts = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def dimensions(self) -> int:
        return int(self._matrix.shape[1]) if len(self._ids) else 0

    @property
    def nbytes(self) -> int:
        return int(self._matrix.nbytes)

    def search(self, query: Vectors, limit: int, also: Sequence[str] = ()) -> DenseResult:
        """The `limit` passages closest to `query`, plus the scores of the passages in `also`."""
        if not self._ids or query.shape[-1] != self.dimensions:
            return DenseResult([], {}, 0.0, 0.0, 0)
        similarities = self._matrix @ query.astype(np.float32)
        best = np.maximum.reduceat(similarities, self._starts)
        limit = min(limit, len(best))
        top = np.argpartition(-best, limit - 1)[:limit]
        top = top[np.argsort(-best[top], kind="stable")]
        hits = [(self._ids[int(n)], float(best[n])) for n in top]
        scores = dict(hits)
        for passage_id in also:
            position = self._position.get(passage_id)
            if position is not None:
                scores[passage_id] = float(best[position])
        return DenseResult(hits, scores, float(best.mean()), float(best.std()), len(best))
