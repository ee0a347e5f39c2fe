"""Keyword-search numbers for the knowledge index on synthetic corpora (nothing asserted).

    .venv/bin/python bench/retrieval.py [CHUNKS ...]     (default: 1000 10000)

For each size: ingest throughput (a first `refresh`, BM25 only), the cost of rebuilding BM25 from
the persisted chunks when a process starts, and p50/p95 latency of `retrieve` (top 5).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bot.chunking import chunk_file
from bot.knowledge import Knowledge
from bot.retrievers import KeywordIndex
from bot.settings import Settings

SECTIONS_PER_FILE = 10
WORDS_PER_SECTION = 120  # ~300 tokens of pseudo-words: one chunk each (CHUNK_TOKENS is 384)
VOCABULARY = 5000
QUERIES = 200
QUERY_WORDS = 4
TOP_K = 5
SEED = 7


def make_corpus(root: Path, chunks: int, rng: random.Random) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "be", "du"]
    words = ["".join(syllables[int(d)] for d in f"{n:04d}") for n in range(VOCABULARY)]
    weights = [1 / (rank + 1) for rank in range(VOCABULARY)]  # Zipf-like, as in real text
    for file_number in range(chunks // SECTIONS_PER_FILE):
        sections = []
        for section in range(SECTIONS_PER_FILE):
            body = " ".join(rng.choices(words, weights, k=WORDS_PER_SECTION))
            sections.append(f"## Section {section}\n\n{body}.\n")
        (root / f"doc{file_number:05d}.md").write_text("\n".join(sections), encoding="utf-8")
    return words


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run(chunks: int) -> None:
    rng = random.Random(SEED)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "kb").mkdir()
        words = make_corpus(root / "kb", chunks, rng)
        settings = Settings(_env_file=None, data_dir=root / "data", knowledge_dir=root / "kb")
        knowledge = Knowledge(settings)
        try:
            started = time.perf_counter()
            report = await knowledge.refresh()
            ingest = time.perf_counter() - started

            restarted = Knowledge(settings)
            started = time.perf_counter()
            await restarted.retrieve("warm up", api_key=None, top_k=TOP_K)
            reload = time.perf_counter() - started
            await restarted.close()

            texts = [
                (chunk.id, chunk.indexed_text)
                for path in sorted((root / "kb").iterdir())
                for chunk in chunk_file(path, path.name, "bench")
            ]
            started = time.perf_counter()
            KeywordIndex(texts, candidates=40)
            rebuild = time.perf_counter() - started

            latencies = []
            for _ in range(QUERIES):
                query = " ".join(rng.choices(words[:2000], k=QUERY_WORDS))
                started = time.perf_counter()
                await knowledge.retrieve(query, api_key=None, top_k=TOP_K)
                latencies.append((time.perf_counter() - started) * 1000)
        finally:
            await knowledge.close()
    print(
        f"{report.chunks:>6} chunks: ingest {ingest:6.2f} s ({report.chunks / ingest:5.0f} chunk/s)"
        f" | BM25 rebuild {rebuild * 1000:6.0f} ms, start-up load {reload * 1000:6.0f} ms"
        f" | retrieve p50 {statistics.median(latencies):5.1f} ms"
        f" p95 {percentile(latencies, 0.95):5.1f} ms"
    )


def main() -> None:
    sizes = [int(arg) for arg in sys.argv[1:]] or [1000, 10000]
    for size in sizes:
        asyncio.run(run(size))


if __name__ == "__main__":
    main()
