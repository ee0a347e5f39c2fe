"""The scale benchmark's figures: one row per scenario and replica count from a run's records,
the markdown tables the README quotes, and the plot (answers per second and p95 first visible
text against replicas, both scenarios), drawn as bench/plots.py draws the e2e plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on a server; PNGs only
import matplotlib.pyplot as plt

from bench.e2e.figures import pct

STYLE = {
    "many": {"color": "tab:blue", "marker": "o"},
    "one": {"color": "tab:red", "marker": "s"},
}


def summarize(
    result: dict[str, Any], *, cpu: dict[str, float], rss_mb: list[float]
) -> dict[str, Any]:
    """A run's row. `cpu`: CPU seconds each process spent during the run ("replicas" summed);
    `rss_mb`: each replica's peak RSS so far."""
    convs = result["conversations"]
    answered = [c for c in convs if c["exact"]]
    started = result["started"]
    last = max((c["final"] for c in answered), default=math.nan)
    first = [c["first_visible"] - c["asked"] for c in convs if c["first_visible"] is not None]
    final = [c["final"] - c["asked"] for c in answered]
    # A question whose answer never showed counts as never: percentiles over all questions.
    first += [math.inf] * (len(convs) - len(first))
    final += [math.inf] * (len(convs) - len(final))
    count = len(answered)
    return {
        "questions": len(convs),
        "answered": count,
        "answers_per_s": count / (last - started) if count else 0.0,
        "first_visible_p50": pct(first, 0.50),
        "first_visible_p95": pct(first, 0.95),
        "to_final_p50": pct(final, 0.50),
        "to_final_p95": pct(final, 0.95),
        "rate_limited": sum(result["rate_limited"].values()),
        "rate_limited_by_method": result["rate_limited"],
        "retry_after_violations": result["retry_after_violations"],
        "cpu_s": cpu,
        "cpu_s_per_answer": cpu["replicas"] / count if count else math.nan,
        "others_cpu_s_per_answer": (
            (sum(cpu.values()) - cpu["replicas"]) / count if count else math.nan
        ),
        "peak_rss_mb": max(rss_mb),
        "peak_rss_mb_each": rss_mb,
        "unanswered": [c for c in convs if not c["exact"]],
    }


def _f(value: float, digits: int = 2) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "never"
    if isinstance(value, float) and math.isnan(value):
        return "–"
    return f"{value:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | replicas | answered | answers/s | first visible p50 / p95 s | "
        "question → final p50 / p95 s | 429s | Retry-After violations | "
        "replica CPU s / answer | fakes + servers CPU s / answer | peak RSS MB / replica | "
        "cores busy (outside the bench) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scenario_label']} | {r['replicas']} | {r['answered']}/{r['questions']} "
            f"| {_f(r['answers_per_s'])} "
            f"| {_f(r['first_visible_p50'])} / {_f(r['first_visible_p95'])} "
            f"| {_f(r['to_final_p50'], 1)} / {_f(r['to_final_p95'], 1)} "
            f"| {r['rate_limited']} | {r['retry_after_violations']} "
            f"| {_f(r['cpu_s_per_answer'], 3)} | {_f(r['others_cpu_s_per_answer'], 3)} "
            f"| {_f(r['peak_rss_mb'], 0)} "
            f"| {_f(r['machine_busy_cores'])} ({_f(r['outside_cores'])}) |"
        )
    return "\n".join(lines)


def memory_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| index in PostgreSQL | KEYWORD_SEARCH | chunks | RSS after start MB "
        "| RSS after one answer MB | peak RSS MB | start to healthy s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['index']} | {r['keyword_search']} | {r['chunks']:,} "
            f"| {_f(r['rss_start_mb'], 0)} | {_f(r['rss_answered_mb'], 0)} "
            f"| {_f(r['peak_rss_mb'], 0)} | {_f(r['start_s'], 1)} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    fig, (rate_ax, latency_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for scenario in ("many", "one"):
        mine = sorted((r for r in rows if r["scenario"] == scenario), key=lambda r: r["replicas"])
        if not mine:
            continue
        xs = [r["replicas"] for r in mine]
        label = mine[0]["scenario_label"]
        rate_ax.plot(xs, [r["answers_per_s"] for r in mine], label=label, **STYLE[scenario])
        p95 = [r["first_visible_p95"] for r in mine]
        latency_ax.plot(
            xs, [v if math.isfinite(v) else math.nan for v in p95], label=label, **STYLE[scenario]
        )
    for ax, ylabel, heading in (
        (rate_ax, "answers per second (completed)", "throughput"),
        (latency_ax, "seconds", "question → first visible text, p95"),
    ):
        xs = sorted({r["replicas"] for r in rows})
        ax.set_xticks(xs)
        ax.set_xlabel("bot run replicas (2 CPU cores in all)")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.set_title(heading)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
