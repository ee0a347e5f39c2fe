"""Runs the end-to-end benchmark: for each platform and concurrency, answerbot and then the naive
baseline, each against a fresh fake model and fake platform in processes of their own.

    python -m bench.e2e.runner [--platforms slack,discord] [--concurrency 1,20,100,500]
                               [--bots answerbot,naive] [--json PATH] [--slack-speedup 10]

Per run it prints one row and, with --json, writes every row (and the run's settings). A naive
run gets until twice answerbot's time to its last final text (at least a minute): answers it has
not finished by then count as not delivered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from bench.e2e import procs
from bench.e2e.common import (
    DEFAULT_FIRST_TOKEN,
    DEFAULT_INTERVAL,
    DEFAULT_TOKENS,
    Conversation,
)
from bench.e2e.figures import summarize
from bot.resources import bundled

ROOT = Path(__file__).resolve().parent.parent.parent
MIN_DEADLINE = 60.0
NAIVE_DEADLINE_FACTOR = 2.0
# answerbot's own deadline: generous multiples of what the platform's limits need at best.
ANSWERBOT_DEADLINE = 600.0


async def _json(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> Any:
    async with session.request(method, url, **kw) as response:
        response.raise_for_status()
        return await response.json()


async def one_run(
    platform: str,
    bot: str,
    concurrency: int,
    *,
    options: argparse.Namespace,
    deadline: float,
    scratch: Path,
) -> dict[str, Any]:
    logs = scratch / "logs" / f"{platform}-{bot}-{concurrency}"
    model, model_url = procs.start(
        "model",
        [
            "-m",
            "bench.e2e.model",
            f"--tokens={options.tokens}",
            f"--interval={options.interval}",
            f"--first-token={options.first_token}",
        ],
        logs=logs,
        ready_prefix="BENCH_MODEL_URL",
    )
    children = [model]
    try:
        speedup = options.slack_speedup if platform == "slack" else options.discord_speedup
        fake, platform_url = procs.start(
            "platform",
            [
                "-m",
                f"bench.e2e.{platform}_platform",
                f"--conversations={concurrency}",
                f"--speedup={speedup}",
                *(["--check-spec"] if options.check_spec else []),
            ],
            logs=logs,
            ready_prefix="BENCH_PLATFORM_URL",
        )
        children.append(fake)
        timeout = aiohttp.ClientTimeout(total=deadline + ANSWERBOT_DEADLINE)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            kind = "naive" if bot == "naive" else "answerbot"
            env = await _json(session, "GET", f"{platform_url}/bench/env", params={"bot": kind})
            port = procs.free_port()
            data = scratch / f"data-{platform}-{bot}-{concurrency}"
            knowledge = scratch / "knowledge"
            if not knowledge.exists():
                shutil.copytree(bundled("knowledge"), knowledge)
            env.update(
                {
                    "OPENAI_BASE_URL": str(model_url),
                    "OPENAI_API_KEY": "sk-bench-0000000000000000",
                    "DATA_DIR": str(data),
                    "KNOWLEDGE_DIR": str(knowledge),
                    "HOST": "127.0.0.1",
                    "PORT": str(port),
                    "LOG_LEVEL": "WARNING",
                    "NAIVE_EVERY": str(options.naive_every),
                }
            )
            cwd = None
            if bot.startswith("answerbot@"):
                # The bot as it was at that revision: its checkout comes first on the path.
                cwd = checkout(bot.split("@", 1)[1], scratch)
                env["PYTHONPATH"] = str(cwd)
            if bot.startswith("answerbot"):
                args = ["-m", "bot", "run"]
            else:
                args = ["-m", f"bench.e2e.{platform}_naive"]
            subject, _ = procs.start(bot, args, env=env, logs=logs, cwd=cwd)
            children.append(subject)
            bot_url = f"http://127.0.0.1:{port}"
            if platform == "slack":
                await procs.wait_healthy(f"{bot_url}/healthz", subject)
            else:
                # Connected and commands synced: start-up stays out of the CPU figure.
                await _json(session, "GET", f"{platform_url}/bench/ready")
            cpu_before = subject.cpu_seconds()
            result = await _json(
                session,
                "POST",
                f"{platform_url}/bench/run",
                json={"bot_url": bot_url, "deadline": deadline},
            )
            cpu = subject.cpu_seconds() - cpu_before
            rss = subject.peak_rss_mb()
            timings = await _json(
                session, "GET", f"{str(model_url).removesuffix('/v1')}/bench/timings"
            )
    finally:
        for child in reversed(children):
            child.stop()
    conversations = [Conversation.from_json(c) for c in result["conversations"]]
    for conv in conversations:
        timing = timings.get(str(conv.qid), {})
        conv.first_token = timing.get("first_token")
        conv.last_token = timing.get("last_token")
        conv.extra["tokens"] = timing.get("tokens", 0)
    if options.keep:
        (logs / "result.json").write_text(
            json.dumps({**result, "conversations": [c.to_json() for c in conversations]})
        )
    row = summarize(result, conversations, cpu_seconds=cpu, peak_rss_mb=rss)
    row.update(platform=platform, bot=bot, concurrency=concurrency, speedup=speedup)
    return row


def checkout(revision: str, scratch: Path) -> Path:
    """A worktree of this repository at `revision` (for before/after runs in one go)."""
    target = scratch / f"rev-{revision}"
    if not target.exists():
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(target), revision],
            check=True,
            capture_output=True,
        )
    return target


def describe(row: dict[str, Any]) -> str:
    def s(value: float) -> str:
        if value is None or math.isnan(value):
            return "-"
        return "never" if math.isinf(value) else f"{value:.2f}"

    return (
        f"{row['platform']:<7} {row['bot']:<9} C={row['concurrency']:<4}"
        f" ack p50/p99 {s(row['ack_p50'])}/{s(row['ack_p99'])}"
        f" | first visible p50/p95 {s(row['first_visible_p50'])}/{s(row['first_visible_p95'])}"
        f" (floor {s(row['first_visible_floor_p50'])}/{s(row['first_visible_floor_p95'])})"
        f" | to final p50/p95 {s(row['to_final_p50'])}/{s(row['to_final_p95'])}"
        f" (floor {s(row['to_final_floor_p50'])}/{s(row['to_final_floor_p95'])})"
        f" | edits {row['edit_calls']}/{row['edit_calls_allowed']}"
        f" | 429s {row['rate_limited']} early {row['retry_after_violations']}"
        f" | exact {row['exact']}/{row['conversations']}"
        f" | CPU {s(row['cpu_s_per_1k_tokens'])} s/1k tok, RSS {row['peak_rss_mb']:.0f} MB"
    )


async def run_all(options: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="answerbot-bench-") as scratch_dir:
        scratch = Path(options.keep) if options.keep else Path(scratch_dir)
        for platform in options.platforms.split(","):
            for concurrency in (int(c) for c in options.concurrency.split(",")):
                ours: dict[str, Any] | None = None
                for bot in options.bots.split(","):
                    deadline = ANSWERBOT_DEADLINE
                    if bot == "naive" and ours is not None:
                        taken = ours["to_final_max"]
                        if not math.isfinite(taken):
                            taken = ours["duration"]
                        deadline = max(MIN_DEADLINE, NAIVE_DEADLINE_FACTOR * taken)
                    row = await one_run(
                        platform,
                        bot,
                        concurrency,
                        options=options,
                        deadline=deadline,
                        scratch=scratch,
                    )
                    row["deadline"] = deadline
                    if bot == "answerbot":
                        ours = row
                    rows.append(row)
                    print(describe(row), flush=True)
    subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], check=False)
    return rows


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--platforms", default="slack,discord")
    p.add_argument("--concurrency", default="1,20,100,500")
    p.add_argument(
        "--bots",
        default="answerbot,naive",
        help="answerbot, naive, and answerbot@REV for the bot at a git revision",
    )
    p.add_argument("--tokens", type=int, default=DEFAULT_TOKENS)
    p.add_argument("--interval", type=float, default=DEFAULT_INTERVAL)
    p.add_argument("--first-token", type=float, default=DEFAULT_FIRST_TOKEN)
    p.add_argument("--naive-every", type=int, default=20, help="the baseline edits every N tokens")
    p.add_argument("--slack-speedup", type=float, default=10.0, help="Slack's windows / S")
    p.add_argument("--discord-speedup", type=float, default=1.0)
    p.add_argument("--check-spec", action="store_true", help="fakes check traffic against specs")
    p.add_argument("--keep", help="keep logs and data in this folder")
    p.add_argument("--json", help="write the rows here")
    return p


def main() -> None:
    options = parser().parse_args()
    rows = asyncio.run(run_all(options))
    if options.json:
        out = {"settings": vars(options), "rows": rows}
        Path(options.json).write_text(json.dumps(out, indent=2, default=str))
        print(f"wrote {options.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
