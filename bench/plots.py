"""PNG plots of the end-to-end rows: first visible text and time to final text against
concurrency, per platform, with the floor the platform's limits allow and the naive baseline."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on a server; PNGs only
import matplotlib.pyplot as plt

STYLE = {
    "answerbot": {"color": "tab:blue", "marker": "o", "label": "answerbot"},
    "naive": {"color": "tab:red", "marker": "s", "label": "naive, edit every N tokens"},
    "floor": {"color": "black", "marker": "", "label": "floor the platform limits allow"},
}


def _series(rows: list[dict[str, Any]], bot: str, key: str) -> tuple[list[int], list[float]]:
    picked = sorted((r for r in rows if r["bot"] == bot), key=lambda r: r["concurrency"])
    xs = [r["concurrency"] for r in picked]
    # Not delivered (infinite) is left out of the line; the tables say how many.
    ys = [r[key] if r[key] is not None and math.isfinite(r[key]) else math.nan for r in picked]
    return xs, ys


def _panel(ax: Any, rows: list[dict[str, Any]], metric: str, title: str) -> None:
    for bot in ("answerbot", "naive"):
        for share, style in (("p50", "-"), ("p95", ":")):
            # Percentiles over the answers that arrived; the labels say how many did.
            xs, ys = _series(rows, bot, f"{metric}_delivered_{share}")
            if xs:
                label = f"{STYLE[bot]['label']} {share}"
                ax.plot(xs, ys, linestyle=style, **{**STYLE[bot], "label": label})
        if bot == "naive" and metric == "to_final":
            for row in rows:
                if row["bot"] == bot and row["exact"] < row["conversations"]:
                    ax.annotate(
                        f"{row['exact']}/{row['conversations']} delivered",
                        (row["concurrency"], row[f"{metric}_delivered_p50"]),
                        textcoords="offset points",
                        xytext=(4, 6),
                        fontsize=7,
                        color=STYLE[bot]["color"],
                    )
    for share, style in (("p50", "--"), ("p95", ":")):
        xs, ys = _series(rows, "answerbot", f"{metric}_floor_{share}")
        if xs:
            ax.plot(xs, ys, linestyle=style, **{**STYLE["floor"], "label": f"floor {share}"})
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("concurrent conversations")
    ax.set_ylabel("seconds")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def plot(rows: list[dict[str, Any]], out: Path, machine: str) -> list[Path]:
    written = []
    for platform in sorted({r["platform"] for r in rows}):
        mine = [r for r in rows if r["platform"] == platform]
        speedup = mine[0].get("speedup", 1)
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        _panel(axes[0], mine, "first_visible", "model's first token -> first visible text")
        fig.text(
            0.5,
            0.01,
            "lines: answers that arrived; floor: the platform limits' best",
            ha="center",
            fontsize=7,
        )
        _panel(axes[1], mine, "to_final", "question -> final text")
        note = f" (limits' windows / {speedup:g})" if speedup != 1 else ""
        fig.suptitle(f"{platform}{note}: {machine}", fontsize=9)
        fig.tight_layout()
        path = out / f"e2e-{platform}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def main() -> None:
    """Redraw the plots from a results.json: `python -m bench.plots bench/results/results.json`."""
    import json
    import sys

    path = Path(sys.argv[1])
    results = json.loads(path.read_text())
    info = results["machine"]
    machine = f"{info['cpu']}, {info['cores']} cores, Python {info['python']}, {info['date']}"
    for written in plot(results["e2e"]["rows"], path.parent, machine):
        print(written)


if __name__ == "__main__":
    main()
