"""One measured process of the retrieval benchmark: `bench/retrieval.py` runs each step in a
fresh process (`--worker ingest|restart`), so each peak RSS (VmHWM) is its own.

- ingest: a first `Knowledge.refresh()` of an empty index; chunks per second.
- restart: what `bot run` does on an already-indexed folder (a new `Knowledge`, its `refresh()`,
  the first `retrieve`), then `retrieve` latency over random questions, the embedding requests
  the fake endpoint counted meanwhile, and both ways to get the BM25 index at start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import statistics
import time
import urllib.request
from pathlib import Path
from typing import Any

from bot.knowledge import INDEX_DIRNAME, Knowledge
from bot.knowledge.files import IndexFiles
from bot.knowledge.keywords import KeywordIndex
from bot.settings import Settings

VOCABULARY = 5000
QUERY_VOCABULARY = 2000  # questions use the commoner words, so most find passages
QUERY_WORDS = 4
TOP_K = 5
CANDIDATES = 40
SEED = 7
FAKE_KEY = "sk-fake-test-key-0001"
EMBED_MODEL = "text-embedding-fake"
STATS_PATH = "/bench/stats"


def vocabulary() -> list[str]:
    """The corpus's pseudo-words, commonest first (the questions use the first ones)."""
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "be", "du"]
    return ["".join(syllables[int(d)] for d in f"{n:04d}") for n in range(VOCABULARY)]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fake_stats(url: str | None) -> dict[str, int]:
    if url is None:
        return {"embedding_requests": 0, "embedded_texts": 0}
    stats_url = url.removesuffix("/v1") + STATS_PATH
    with urllib.request.urlopen(stats_url, timeout=10) as response:
        data: dict[str, int] = json.loads(response.read())
    return data


def settings_for(mode: str, kb: Path, data: Path, url: str | None) -> Settings:
    # The endpoint provider: with no key it is keyword search alone (bm25); the local model's
    # figures are bench/quality/eval.py's (it cannot embed 100k passages in a benchmark's time).
    values: dict[str, Any] = {
        "data_dir": data,
        "knowledge_dir": kb,
        "openai_api_key": None,
        "embed_provider": "openai",
    }
    if mode == "hybrid":
        values.update(openai_api_key=FAKE_KEY, openai_base_url=url, embed_model=EMBED_MODEL)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]  # pydantic-settings


async def ingest(mode: str, kb: Path, data: Path, url: str | None) -> dict[str, Any]:
    settings = settings_for(mode, kb, data, url)
    before = fake_stats(url)
    knowledge = Knowledge(settings)
    try:
        started, cpu_started = time.perf_counter(), time.process_time()
        report = await knowledge.refresh()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        await knowledge.close()
    after = fake_stats(url)
    return {
        "chunks": report.chunks,
        "files": len(report.added),
        "dense": report.dense,
        "note": report.note,
        "ingest_s": seconds,
        "ingest_chunks_per_s": report.chunks / seconds,
        "ingest_cpu_s": cpu,  # the bot's process only; the fake's embedding work is not in it
        "ingest_embedded_texts": after["embedded_texts"] - before["embedded_texts"],
        "ingest_peak_rss_mb": peak_rss_mb(),
    }


async def restart(mode: str, kb: Path, data: Path, url: str | None, queries: int) -> dict[str, Any]:
    settings = settings_for(mode, kb, data, url)
    api_key = FAKE_KEY if mode == "hybrid" else None
    rng = random.Random(SEED + 1)
    words = vocabulary()[:QUERY_VOCABULARY]
    questions = [" ".join(rng.choices(words, k=QUERY_WORDS)) for _ in range(queries + 1)]
    before = fake_stats(url)
    started = time.perf_counter()
    knowledge = Knowledge(settings)
    try:
        report = await knowledge.refresh()
        refreshed = time.perf_counter()
        during_refresh = fake_stats(url)
        first = await knowledge.retrieve(questions[0], api_key=api_key, top_k=TOP_K)
        answered = time.perf_counter()
        after_first = fake_stats(url)
        latencies: list[float] = []
        found = 0
        for question in questions[1:]:
            begun = time.perf_counter()
            result = await knowledge.retrieve(question, api_key=api_key, top_k=TOP_K)
            latencies.append((time.perf_counter() - begun) * 1000)
            found += bool(result.passages)
    finally:
        await knowledge.close()
    return {
        "startup_s": answered - started,
        "startup_refresh_s": refreshed - started,
        "startup_first_retrieve_s": answered - refreshed,
        "startup_changed_files": len(report.added) + len(report.changed),
        "startup_reembed_requests": (
            during_refresh["embedding_requests"] - before["embedding_requests"]
        ),
        "first_retrieve_embed_requests": (
            after_first["embedding_requests"] - during_refresh["embedding_requests"]
        ),
        "first_retrieve_passages": len(first.passages),
        "retrieve_p50_ms": statistics.median(latencies),
        "retrieve_p95_ms": percentile(latencies, 0.95),
        "questions_with_passages": found / len(latencies),
        "serve_peak_rss_mb": peak_rss_mb(),  # before the BM25 timings below add their copies
        **bm25_seconds(data),
    }


def bm25_seconds(data: Path) -> dict[str, float]:
    """Both ways a start-up can get its BM25 index: build it from the persisted chunks (what every
    start did before the index was saved) or load the saved one (what it does now)."""
    files = IndexFiles(data / INDEX_DIRNAME)
    manifest = files.read_manifest()
    texts = [
        (chunk.id, chunk.indexed_text)
        for path, entry in manifest.files.items()
        for chunk in files.read_chunks(path, entry)
    ]
    started = time.perf_counter()
    KeywordIndex(texts, candidates=CANDIDATES)
    built = time.perf_counter()
    ids = [chunk_id for chunk_id, _ in texts]
    loaded = KeywordIndex.load(files.keywords_path(KeywordIndex.fingerprint(ids)), ids, CANDIDATES)
    done = time.perf_counter()
    return {
        "bm25_build_s": built - started,
        "bm25_load_s": done - built if loaded is not None else float("nan"),
    }


def worker(args: argparse.Namespace) -> None:
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # a line per embedding request
    kb, data = Path(args.kb), Path(args.data)
    if args.worker == "ingest":
        result = asyncio.run(ingest(args.mode, kb, data, args.fake_url))
    else:
        result = asyncio.run(restart(args.mode, kb, data, args.fake_url, args.queries))
    print(json.dumps(result), flush=True)
