"""The eval's figures: retrieval by kind and method, embedders side by side, follow-up strategies,
the keyless gate calibrated on the dev split and judged on the test split, latency at scale.

Writes `quality.md` (the tables), `quality.json` (every figure) and `quality.png` into the output
folder, and prints the tables.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from bot.knowledge import search

ANSWERABLE = ("direct", "paraphrase", "conversational", "followup")
UNANSWERED = ("unanswerable", "offtopic")
METHODS = ("keyword", "dense", "fused", "rescored")
FOLLOWUP_VARIANTS = ("asked", "with-last-turn", "rewritten")
TOP_K = 5
# The gate's rule (see bot.knowledge.search.Evidence.relevant), and the values tried on dev.
SURE_GRID = [round(0.4 + 0.05 * n, 2) for n in range(9)]
COSINE_GRID = [round(0.15 + 0.05 * n, 2) for n in range(7)]
Z_GRID = [round(2.0 + 0.25 * n, 2) for n in range(13)]
KEYWORD_GRID = [float(k) for k in range(3, 16)] + [1e9]
MAX_FALSE_DECLINES = 0.1


def _variant(kind: str, *, keyless: bool = False) -> str:
    """The query the bot retrieves with: a follow-up is rewritten by the model (with a key) or
    joined to the last question (without one)."""
    if kind != "followup":
        return "asked"
    return "with-last-turn" if keyless else "rewritten"


def _metrics(ranks: list[int | None]) -> dict[str, float]:
    count = len(ranks) or 1
    return {
        "hit@1": sum(1 for r in ranks if r == 1) / count,
        "hit@5": sum(1 for r in ranks if r is not None and r <= TOP_K) / count,
        "mrr": sum(1 / r for r in ranks if r is not None) / count,
        "n": len(ranks),
    }


def _ranks(
    run: dict[str, Any], questions: list[dict[str, Any]], kind: str, key: str, split: str | None
) -> list[int | None]:
    chosen = {q["id"] for q in questions if q["kind"] == kind and split in (None, q["split"])}
    return [record["ranks"][key] for record in run["records"] if record["id"] in chosen]


Thresholds = tuple[float, float, float, float]  # COSINE_SURE, COSINE_MIN, Z_MIN, KEYWORD_MIN


def _relevant(evidence: dict[str, float | None], thresholds: Thresholds) -> bool:
    sure, cosine_min, z_min, keyword_min = thresholds
    z, cosine, keyword = evidence["z"], evidence["cosine"], evidence["keyword"] or 0.0
    if z is None or cosine is None:
        return keyword >= search.KEYWORD_ONLY_MIN
    return cosine >= sure or (cosine >= cosine_min and (z >= z_min or keyword >= keyword_min))


def _gate_outcome(
    cases: list[tuple[dict[str, Any], dict[str, Any]]], split: str | None, thresholds: Thresholds
) -> dict[str, float]:
    """`cases`: (question, its record). Shown right: shown, with the answer in the top 5."""
    outcomes: dict[str, list[bool]] = {kind: [] for kind in (*ANSWERABLE, *UNANSWERED)}
    false_declines = declines = 0
    for question, record in cases:
        if split is not None and question["split"] != split:
            continue
        kind = question["kind"]
        variant = _variant(kind, keyless=True)
        relevant = _relevant(record["evidence"][variant], thresholds)
        if kind in UNANSWERED:
            outcomes[kind].append(not relevant)
            declines += not relevant
        else:
            rank = record["ranks"][f"{variant}/rescored"]
            outcomes[kind].append(relevant and rank is not None and rank <= TOP_K)
            false_declines += not relevant
            declines += not relevant

    def share(kinds: tuple[str, ...]) -> float:
        values = [v for kind in kinds for v in outcomes[kind]]
        return sum(values) / (len(values) or 1)

    answerable = sum(len(outcomes[kind]) for kind in ANSWERABLE)
    return {
        "false_declines": false_declines / (answerable or 1),
        "answerable_shown_right": share(ANSWERABLE),
        "unanswered_declined": share(UNANSWERED),
        "decline_precision": (declines - false_declines) / declines if declines else 1.0,
        **{kind: share((kind,)) for kind in outcomes},
    }


def calibrate(cases: list[tuple[dict[str, Any], dict[str, Any]]]) -> Thresholds:
    """The gate thresholds that decline the most unanswered dev questions while declining at most
    MAX_FALSE_DECLINES of the answerable ones: "I couldn't find that" for a question the documents
    answer is the failure users notice, passages shown for one they don't answer is the milder."""
    best: tuple[tuple[float, float], Thresholds] | None = None
    for thresholds in itertools.product(SURE_GRID, COSINE_GRID, Z_GRID, KEYWORD_GRID):
        if thresholds[0] < thresholds[1]:
            continue
        outcome = _gate_outcome(cases, "dev", thresholds)
        if outcome["false_declines"] > MAX_FALSE_DECLINES:
            continue
        key = (outcome["unanswered_declined"], -outcome["false_declines"])
        if best is None or key > best[0]:
            best = (key, thresholds)
    assert best is not None
    return best[1]


def _cases(
    runs: list[dict[str, Any]], questions: dict[str, list[dict[str, Any]]], embedder: str
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    cases = []
    for run in runs:
        if run["embedder"] != embedder:
            continue
        records = {r["id"]: r for r in run["records"]}
        cases += [(q, records[q["id"]]) for q in questions[run["corpus"]]]
    return cases


def write_report(
    questions: dict[str, list[dict[str, Any]]],
    runs: list[dict[str, Any]],
    scale: list[dict[str, Any]],
    out: Path,
) -> None:
    figures: dict[str, Any] = {"runs": {}, "scale": scale}
    lines: list[str] = []
    default = runs[0]["embedder"]

    for run in (r for r in runs if r["embedder"] == default):
        corpus = questions[run["corpus"]]
        lines.append(f"### Retrieval by question kind and method: {run['corpus']} ({default})")
        lines.append("")
        lines.append("hit@1 / hit@5 / MRR@10 of the passage that answers the question, all splits.")
        lines.append("")
        lines.append("| kind | n | " + " | ".join(METHODS) + " |")
        lines.append("|---|---|" + "---|" * len(METHODS))
        for kind in ANSWERABLE:
            cells = []
            for method in METHODS:
                m = _metrics(_ranks(run, corpus, kind, f"{_variant(kind)}/{method}", None))
                cells.append(f"{m['hit@1']:.2f} / {m['hit@5']:.2f} / {m['mrr']:.2f}")
            n = len(_ranks(run, corpus, kind, "asked/keyword", None))
            lines.append(f"| {kind} | {n} | " + " | ".join(cells) + " |")
        lines.append("")

    lines.append("### Embedders compared (rescored hybrid; hit@5 dev / test)")
    lines.append("")
    lines.append(
        "| embedder | corpus | "
        + " | ".join(ANSWERABLE)
        + " | ingest chunks/s | query p50 ms | peak RSS MB |"
    )
    lines.append("|---|---|" + "---|" * (len(ANSWERABLE) + 3))
    for run in runs:
        corpus = questions[run["corpus"]]
        per_kind: dict[str, Any] = {}
        cells = []
        for kind in ANSWERABLE:
            key = f"{_variant(kind)}/rescored"
            dev = _metrics(_ranks(run, corpus, kind, key, "dev"))
            test = _metrics(_ranks(run, corpus, kind, key, "test"))
            every = {
                method: _metrics(_ranks(run, corpus, kind, f"{_variant(kind)}/{method}", None))
                for method in METHODS
            }
            followups = (
                {
                    variant: _metrics(_ranks(run, corpus, kind, f"{variant}/rescored", None))
                    for variant in FOLLOWUP_VARIANTS
                }
                if kind == "followup"
                else None
            )
            per_kind[kind] = {"dev": dev, "test": test, "all": every, "followups": followups}
            cells.append(f"{dev['hit@5']:.2f} / {test['hit@5']:.2f}")
        figures["runs"][f"{run['embedder']}@{run['corpus']}"] = {
            "kinds": per_kind,
            **{k: v for k, v in run.items() if k != "records"},
        }
        lines.append(
            f"| {run['embedder']} | {run['corpus']} | "
            + " | ".join(cells)
            + f" | {run['chunks_per_second']:.1f} | {run['query_ms_p50']:.1f} "
            f"| {run['peak_rss_mb']:.0f} |"
        )
    lines.append("")

    lines.append(f"### Follow-ups: what retrieval searches with ({default}, rescored, hit@5)")
    lines.append("")
    lines.append("| corpus | " + " | ".join(FOLLOWUP_VARIANTS) + " |")
    lines.append("|---|" + "---|" * len(FOLLOWUP_VARIANTS))
    for run in (r for r in runs if r["embedder"] == default):
        corpus = questions[run["corpus"]]
        cells = [
            f"{_metrics(_ranks(run, corpus, 'followup', f'{v}/rescored', None))['hit@5']:.2f}"
            for v in FOLLOWUP_VARIANTS
        ]
        lines.append(f"| {run['corpus']} | " + " | ".join(cells) + " |")
    lines.append("")

    cases = _cases(runs, questions, default)
    thresholds = calibrate(cases)
    shipped: Thresholds = (search.COSINE_SURE, search.COSINE_MIN, search.Z_MIN, search.KEYWORD_MIN)
    figures["gate"] = {"calibrated_on_dev": thresholds, "shipped": shipped}
    lines.append(f"### Keyless gate ({default}): show passages or decline, with no model")
    lines.append("")
    lines.append(
        "Rule: show when the best passage's cosine >= S, or it is >= C and (it stands Z standard "
        "deviations above the question's mean cosine, or the best BM25 score >= K)."
    )
    lines.append(
        f"Most declines on dev (both corpora) with at most {MAX_FALSE_DECLINES:.0%} of "
        f"answerable questions declined: S={thresholds[0]}, C={thresholds[1]}, "
        f"Z={thresholds[2]}, K={thresholds[3]}. Shipped (bot/knowledge/search.py): "
        f"S={shipped[0]}, C={shipped[1]}, Z={shipped[2]}, K={shipped[3]}."
    )
    lines.append("")
    lines.append(
        "| corpus | split | answerable shown with the right passage | answerable declined | "
        "unanswerable declined | off-topic declined | decline precision |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for corpus_name in questions:
        for split in ("dev", "test"):
            chosen = [c for c in cases if c[0] in questions[corpus_name]]
            o = _gate_outcome(chosen, split, shipped)
            figures["gate"][f"{corpus_name}/{split}"] = o
            lines.append(
                f"| {corpus_name} | {split} | {o['answerable_shown_right']:.2f} | "
                f"{o['false_declines']:.2f} | {o['unanswerable']:.2f} | {o['offtopic']:.2f} | "
                f"{o['decline_precision']:.2f} |"
            )
    lines.append("")
    lines.append("Trade-off on test (both corpora) as S moves, the rest as shipped:")
    lines.append("")
    lines.append(
        "| S | answerable shown right | answerable declined | unanswerable + off-topic declined "
        "| decline precision |"
    )
    lines.append("|---|---|---|---|---|")
    figures["gate"]["tradeoff"] = []
    for sure in SURE_GRID:
        o = _gate_outcome(cases, "test", (sure, *shipped[1:]))
        figures["gate"]["tradeoff"].append({"sure": sure, **o})
        lines.append(
            f"| {sure} | {o['answerable_shown_right']:.2f} | {o['false_declines']:.2f} | "
            f"{o['unanswered_declined']:.2f} | {o['decline_precision']:.2f} |"
        )
    lines.append("")

    if scale:
        lines.append("### Query latency at scale (rescored hybrid, question embedding included)")
        lines.append("")
        lines.append("| chunks | p50 ms | p95 ms | peak RSS MB |")
        lines.append("|---|---|---|---|")
        for row in scale:
            lines.append(
                f"| {row['chunks']} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} "
                f"| {row['peak_rss_mb']:.0f} |"
            )
        lines.append("")

    text = "\n".join(lines)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.md").write_text(text + "\n")
    (out / "quality.json").write_text(json.dumps(figures, indent=1) + "\n")
    _plot(figures, f"{default}@{runs[0]['corpus']}", out / "quality.png")


def _plot(figures: dict[str, Any], run: str, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot; `make bench` installs it)")
        return
    kinds = figures["runs"][run]["kinds"]
    figure, axis = plt.subplots(figsize=(8, 4))
    width = 0.2
    for n, method in enumerate(METHODS):
        values = [kinds[kind]["all"][method]["hit@5"] for kind in ANSWERABLE]
        axis.bar([i + n * width for i in range(len(ANSWERABLE))], values, width, label=method)
    axis.set_xticks([i + 1.5 * width for i in range(len(ANSWERABLE))], list(ANSWERABLE))
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("hit@5")
    axis.set_title(f"Passage that answers the question in the top 5 ({run})")
    axis.legend(loc="lower left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
