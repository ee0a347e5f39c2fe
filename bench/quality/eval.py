"""The answer-quality eval: does retrieval put the answering passage in front of the model, and does
the keyless bot decline what the documents don't answer? Figures, nothing asserted.

    python -m bench quality [--embedders minilm,minilm-first,wordllama] [--out bench/results]

Over two corpora: `../shared/corpora/bolt-python-docs` (Bolt for Python's documentation, 42
pages) with the 110 questions in `bench/quality/questions.json`, and the bot's own user guide
(`knowledge/`, what a fresh install answers from) with the 48 in `guide-questions.json`. Both were
written for this eval: direct, paraphrased (no content word shared with the answer),
conversational, follow-ups with history, on-domain questions the docs don't answer, off-topic.
Every question has a split: constants (the keyless gate's thresholds) are chosen on `dev` and
reported on `test`, which nothing was tuned on.

Each embedder runs in its own process through the bot's real index (`Knowledge`): ingest time and
peak RSS are that process's. Per question and retrieval method it records the rank of the first
passage that answers it (from the expected file and containing the expected words), and the
evidence the keyless gate reads. Latency at 1k/10k/100k chunks uses synthetic passages with
random vectors (the model is too slow on 2 cores to embed 100k real ones for a benchmark run),
and the real model for every question's embedding, so the figure includes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.quality.candidates import candidate
from bot.knowledge import Knowledge
from bot.knowledge.embeddings import LocalEmbedder, Passage, PassageVectors, Vectors
from bot.knowledge.search import METHODS
from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
# Each corpus with its questions: a real documentation set nobody here wrote, and the bot's own
# user guide (what `make run` answers from out of the box).
CORPORA = {
    "bolt-python-docs": (
        ROOT.parent / "shared" / "corpora" / "bolt-python-docs",
        Path(__file__).with_name("questions.json"),
    ),
    "user-guide": (ROOT / "knowledge", Path(__file__).with_name("guide-questions.json")),
}
DEPTH = 10  # ranks looked at; hit@1 and hit@5 and MRR@10 come from them
TOP_K = 5  # RETRIEVAL_TOP_K's default: what the model is shown
ANSWERABLE = ("direct", "paraphrase", "conversational", "followup")
UNANSWERED = ("unanswerable", "offtopic")
KINDS = (*ANSWERABLE, *UNANSWERED)
SCALE_SIZES = (1000, 10000, 100000)
SCALE_QUERIES = 200
SCALE_WINDOWS = 1.6  # vectors per passage, as the local model gives the corpus's passages


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _hit(passage_path: str, passage_text: str, expected: list[dict[str, str]]) -> bool:
    text = _normalise(passage_text)
    return any(passage_path == e["path"] and _normalise(e["contains"]) in text for e in expected)


def _queries(question: dict[str, Any]) -> dict[str, str]:
    """The query each way of retrieving would send: follow-ups have three."""
    if question["kind"] != "followup":
        return {"asked": question["question"]}
    last_user = next(t["content"] for t in reversed(question["history"]) if t["role"] == "user")
    return {
        "asked": question["question"],
        "with-last-turn": f"{last_user}\n{question['question']}",
        "rewritten": question["standalone"],
    }


# -- one embedder, in its own process ------------------------------------------------------------


async def _run_embedder(name: str, corpus_name: str) -> dict[str, Any]:
    corpus, questions_file = CORPORA[corpus_name]
    questions = json.loads(questions_file.read_text())
    with tempfile.TemporaryDirectory(prefix="quality-") as scratch:
        knowledge_dir = Path(scratch) / "knowledge"
        knowledge_dir.mkdir()
        for path in corpus.rglob("*.md"):
            if path.name != "README.md":
                target = knowledge_dir / path.relative_to(corpus)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
        settings = Settings(  # type: ignore[call-arg]  # pydantic-settings' own argument
            _env_file=None, data_dir=Path(scratch) / "data", knowledge_dir=knowledge_dir
        )
        knowledge = Knowledge(settings, embedder=candidate(name))
        started = time.perf_counter()
        report = await knowledge.refresh()
        ingest = time.perf_counter() - started
        records = []
        latencies: list[float] = []
        for question in questions:
            record: dict[str, Any] = {"id": question["id"], "ranks": {}, "evidence": {}}
            for variant, query in _queries(question).items():
                for method in METHODS:
                    began = time.perf_counter()
                    found = await knowledge.retrieve(
                        query, api_key=None, top_k=DEPTH, method=method
                    )
                    if method == "rescored":
                        latencies.append(time.perf_counter() - began)
                    rank = next(
                        (
                            n
                            for n, p in enumerate(found.passages, start=1)
                            if _hit(p.path, p.text, question["expected"])
                        ),
                        None,
                    )
                    record["ranks"][f"{variant}/{method}"] = rank
                    if method == "rescored":
                        e = found.evidence
                        record["evidence"][variant] = e.features()
            records.append(record)
        await knowledge.close()
    return {
        "embedder": name,
        "corpus": corpus_name,
        "chunks": report.chunks,
        "ingest_seconds": ingest,
        "chunks_per_second": report.chunks / ingest,
        "dense": report.dense,
        "query_ms_p50": 1000 * statistics.median(latencies),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "records": records,
    }


# -- latency at scale ----------------------------------------------------------------------------


class _SyntheticVectors(LocalEmbedder):
    """Random unit vectors for passages (fast to make at 100k); the real model for questions."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self._random = np.random.default_rng(seed)

    def passages_sync(self, passages: list[Passage]) -> PassageVectors:  # type: ignore[override]
        owners = [n for n in range(len(passages)) for _ in range(1 + (n % 5 < 3))]
        vectors = self._random.standard_normal((len(owners), 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return PassageVectors(vectors, np.asarray(owners, dtype=np.int32))

    async def query(self, text: str, *, api_key: str | None) -> Vectors:
        return self.query_sync(text)  # in this thread: the figure is the work, not the hop


async def _run_scale(size: int) -> dict[str, Any]:
    rng = random.Random(size)
    words = [f"w{n}" for n in range(5000)]
    with tempfile.TemporaryDirectory(prefix="quality-scale-") as scratch:
        knowledge_dir = Path(scratch) / "knowledge"
        knowledge_dir.mkdir()
        for file_number in range(size // 10):
            sections = [
                f"# Section {file_number}.{n}\n\n" + " ".join(rng.choices(words, k=120))
                for n in range(10)
            ]
            (knowledge_dir / f"doc{file_number:06d}.md").write_text("\n\n".join(sections))
        settings = Settings(  # type: ignore[call-arg]  # pydantic-settings' own argument
            _env_file=None, data_dir=Path(scratch) / "data", knowledge_dir=knowledge_dir
        )
        knowledge = Knowledge(settings, embedder=_SyntheticVectors(size))
        report = await knowledge.refresh()
        questions = [" ".join(rng.choices(words[:2000], k=4)) for _ in range(SCALE_QUERIES)]
        await knowledge.retrieve("warm up", api_key=None, top_k=TOP_K)
        latencies = []
        for question in questions:
            began = time.perf_counter()
            await knowledge.retrieve(question, api_key=None, top_k=TOP_K)
            latencies.append(time.perf_counter() - began)
        await knowledge.close()
    latencies.sort()
    return {
        "chunks": report.chunks,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p95_ms": 1000 * latencies[int(len(latencies) * 0.95)],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _worker(kind: str, arg: str, out: Path) -> None:
    logging.basicConfig(level=logging.WARNING)
    if kind == "embedder":
        name, corpus = arg.split("@")
        result = asyncio.run(_run_embedder(name, corpus))
    else:
        result = asyncio.run(_run_scale(int(arg)))
    out.write_text(json.dumps(result))


def _in_child(kind: str, arg: str) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [sys.executable, "-m", "bench.quality.eval", "--worker", kind, arg, out.name]
        subprocess.run(command, check=True, cwd=ROOT)
        result: dict[str, Any] = json.loads(Path(out.name).read_text())
        return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench quality", description=__doc__)
    parser.add_argument("--embedders", default="minilm,minilm-first,wordllama")
    parser.add_argument("--sizes", default=",".join(map(str, SCALE_SIZES)))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="redo the tables from the last run's records (after changing a gate constant)",
    )
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "ARG", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker[0], args.worker[1], Path(args.worker[2]))
        return
    from bench.quality.report import write_report

    questions = {
        corpus: json.loads(questions_file.read_text())
        for corpus, (_, questions_file) in CORPORA.items()
    }
    records = Path(args.out) / "quality-records.json"
    if args.report_only:
        saved = json.loads(records.read_text())
        write_report(questions, saved["runs"], saved["scale"], Path(args.out))
        return
    runs = []
    for name in filter(None, args.embedders.split(",")):
        for corpus in CORPORA:
            print(f"eval: {name} on {corpus} ...", flush=True)
            runs.append(_in_child("embedder", f"{name}@{corpus}"))
    scale = []
    for size in filter(None, args.sizes.split(",")):
        print(f"eval: latency at {size} chunks ...", flush=True)
        scale.append(_in_child("scale", size))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    records.write_text(json.dumps({"runs": runs, "scale": scale}))
    write_report(questions, runs, scale, Path(args.out))


if __name__ == "__main__":
    main()
