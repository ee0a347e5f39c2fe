"""The benchmark suite in one command: end to end on both platforms (answerbot and the naive
baseline), retrieval at scale, the streaming editor in virtual time, Slack's native streaming
against its chat.update path (bench/slack_native.py), and replicas on a shared PostgreSQL and
Redis (bench/scale.py, which writes scale.json, scale.md and scale.png).

    make bench                       (installs what it needs, then runs the below)
    python -m bench [--quick] [--out bench/results]
    python -m bench quality [--embedders ...]   (the answer-quality eval: bench/quality/eval.py)

Writes `results.json` (every figure, and the machine), `results.md` (the tables) and the plots
`e2e-slack.png`, `e2e-discord.png` into --out. Figures, not asserts: nothing here fails on a slow
machine. `--quick` runs 1 and 20 conversations and 1k chunks only, for a smoke test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.e2e import runner
from bench.plots import plot

ROOT = Path(__file__).resolve().parent.parent
# The bot before the fixes the end-to-end figures led to (see the README).
BASELINE = "ad2b0e8"


def machine() -> dict[str, Any]:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%d"),
    }


def describe_machine(info: dict[str, Any]) -> str:
    return (
        f"{info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB, "
        f"Python {info['python']}, Linux {info['kernel']}, {info['date']}"
    )


def fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "never"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def e2e_table(rows: list[dict[str, Any]]) -> str:
    header = (
        "| platform | C | bot | ack p50/p99 s | first visible p50/p95 s | floor | "
        "to final p50/p95 s | floor | edits / allowed | 429s | Retry-After violations | "
        "exact final | CPU s/1k tokens | peak RSS MB |"
    )
    lines = [header, "|" + "|".join("---" for _ in range(header.count("|") - 1)) + "|"]
    for r in rows:
        lines.append(
            f"| {r['platform']} | {r['concurrency']} | {r['bot']} "
            f"| {fmt(r['ack_p50'], 3)} / {fmt(r['ack_p99'], 3)} "
            f"| {fmt(r['first_visible_p50'])} / {fmt(r['first_visible_p95'])} "
            f"| {fmt(r['first_visible_floor_p50'])} / {fmt(r['first_visible_floor_p95'])} "
            f"| {fmt(r['to_final_p50'], 1)} / {fmt(r['to_final_p95'], 1)} "
            f"| {fmt(r['to_final_floor_p50'], 1)} / {fmt(r['to_final_floor_p95'], 1)} "
            f"| {r['edit_calls']} / {r['edit_calls_allowed']} | {r['rate_limited']} "
            f"| {r['retry_after_violations']} | {r['exact']}/{r['conversations']} "
            f"| {fmt(r['cpu_s_per_1k_tokens'], 3)} | {fmt(r['peak_rss_mb'], 0)} |"
        )
    return "\n".join(lines)


def ratio(naive: float, ours: float) -> str:
    if not math.isfinite(naive):
        return "never (most not delivered)"
    if ours == 0:
        return f"{naive:g} vs 0"
    return f"{naive / ours:.1f}x"


def ratios_table(rows: list[dict[str, Any]]) -> str:
    """Naive over answerbot, per platform and concurrency."""
    lines = [
        "| platform | C | 429s naive / answerbot | writes naive / answerbot | "
        "p50 to final, answers delivered, naive / answerbot | "
        "finals delivered naive vs answerbot |",
        "|---|---|---|---|---|---|",
    ]
    ours = {(r["platform"], r["concurrency"]): r for r in rows if r["bot"] == "answerbot"}
    for r in rows:
        if r["bot"] != "naive" or (r["platform"], r["concurrency"]) not in ours:
            continue
        o = ours[(r["platform"], r["concurrency"])]
        lines.append(
            f"| {r['platform']} | {r['concurrency']} "
            f"| {r['rate_limited']} / {o['rate_limited']} "
            f"| {ratio(r['writes'], o['writes'])} "
            f"| {ratio(r['to_final_delivered_p50'], o['to_final_delivered_p50'])} "
            f"| {r['exact']}/{r['conversations']} vs {o['exact']}/{o['conversations']} |"
        )
    return "\n".join(lines)


def run_script(args: list[str]) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout


def main() -> None:
    if sys.argv[1:2] == ["quality"]:  # the answer-quality eval has its own options
        from bench.quality.eval import main as quality

        quality(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument(
        "--skip",
        default="",
        help="comma list of: e2e, before-after, retrieval, editor, scale, slack-native",
    )
    parser.add_argument(
        "--baseline",
        default=BASELINE,
        help="git revision of the bot the before/after rows compare with",
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))
    info = machine()
    previous = out / "results.json"
    # Sections skipped this time keep their last figures.
    results: dict[str, Any] = json.loads(previous.read_text()) if previous.exists() else {}
    results["machine"] = info

    if "e2e" not in skip:
        options = runner.parser().parse_args(["--concurrency", "1,20"] if args.quick else [])
        rows = asyncio.run(runner.run_all(options))
        results["e2e"] = {"settings": vars(options), "rows": rows}
        plot(rows, out, describe_machine(info))

    if "before-after" not in skip:
        options = runner.parser().parse_args(
            [
                "--bots",
                f"answerbot@{args.baseline},answerbot",
                "--concurrency",
                "20" if args.quick else "20,100",
            ]
        )
        rows = asyncio.run(runner.run_all(options))
        results["before_after"] = {"settings": vars(options), "rows": rows}

    if "retrieval" not in skip:
        path = out / "retrieval.json"
        sizes = ["--sizes", "1000"] if args.quick else []
        table = run_script(["bench/retrieval.py", *sizes, "--json", str(path)])
        results["retrieval"] = {**json.loads(path.read_text()), "table": table}
        path.unlink()
        print(table, flush=True)

    if "editor" not in skip:
        answers = "1,20" if args.quick else "1,20,100,500"
        table = run_script(["bench/editor.py", "--answers", answers])
        results["editor"] = table
        print(table, flush=True)

    if "slack-native" not in skip:
        table = run_script(["-m", "bench.slack_native"])
        results["slack_native"] = table
        print(table, flush=True)

    if "scale" not in skip:
        from bench.scale import main as scale

        scale([*(["--quick"] if args.quick else []), "--out", str(out)])

    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "results.md").write_text(markdown(results))
    print(f"wrote {out}/results.json, results.md and plots", file=sys.stderr)


def markdown(results: dict[str, Any]) -> str:
    parts = [f"Machine: {describe_machine(results['machine'])}\n"]
    if "e2e" in results:
        rows = results["e2e"]["rows"]
        parts += ["## End to end\n", e2e_table(rows), "", ratios_table(rows), ""]
    if "before_after" in results:
        rows = results["before_after"]["rows"]
        parts += ["## Before and after the fixes\n", e2e_table(rows), ""]
    if "retrieval" in results:
        parts += [
            "## Retrieval\n",
            "```",
            results["retrieval"].get("table", "").rstrip(),
            "```",
            "",
        ]
    if "editor" in results:
        parts += ["## Streaming editor, virtual time\n", results["editor"].rstrip(), ""]
    if "slack_native" in results:
        parts += [
            "## Slack: native streaming and the chat.update path, one run\n",
            results["slack_native"].rstrip(),
            "",
        ]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    main()
