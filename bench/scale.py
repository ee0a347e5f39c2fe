"""Scale out (issue 14): 1, 2 and 4 `bot run` replicas sharing PostgreSQL (DATABASE_URL) and Redis
(REDIS_URL), Slack's events handed to them in turn (a round-robin load balancer), on many
workspaces (where replicas can help) and on one (where the workspace's shared chat.update budget
is the floor); then what one replica costs in memory with a 100k-chunk index.

    python -m bench.scale [--quick] [--replicas 1,2,4] [--out bench/results]

PostgreSQL (fresh database, fsync on) and Redis start once; the fake Slack (`bench/scale_slack.py`:
OAuth installs, its real limits with windows / 10 as in the e2e bench) and the fake model
(`bench/e2e/model.py`: 200 tokens at 50 a second after 0.5 s) run in processes of their own;
`bot ingest` indexes the bundled guide into PostgreSQL once. Per replica count, fresh replicas
(own DATA_DIR, shared DATABASE_URL, REDIS_URL, SECRET_KEY) run both scenarios. Load: the same
fixed number of questions at the same fixed arrival rate for every replica count (an open loop:
questions keep coming whether or not the bot keeps up, as people's do), chosen above what one
replica answers on this machine, so answers per second measure what the replicas complete and
the latencies include the backlog. Figures, nothing asserted. Writes scale.json, scale.md and
scale.png into --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.__main__ import describe_machine, machine
from bench.e2e import procs
from bench.scale_memory import measure_memory
from bench.scale_report import memory_table, plot, summarize, table
from bench.scale_servers import Servers, busy_seconds
from bot.resources import bundled

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "bench-scale-secret-key"  # the same on every replica: they share sealed rows
SPEEDUP = 10.0  # Slack's windows / 10, as the e2e bench (a run of minutes, not hours)
SCENARIOS = (("many", 20), ("one", 1))  # (scenario, workspaces the questions are spread over)
QUESTIONS, RATE = 150, 10.0  # one every 100 ms for 15 s: above what one replica answers here
# --quick: a smoke test that it all works, in about five minutes.
QUICK_REPLICAS, QUICK_WORKSPACES, QUICK_QUESTIONS, QUICK_CHUNKS = "1,2", 4, 40, 2_000
DEADLINE = 180.0  # seconds from a run's first question to give up on the rest
WARM_UP = {"workspaces": 1, "rate": 10.0, "deadline": 60.0}
SETTLE = 60.0 / SPEEDUP  # one chat.update window: each run starts with full budgets
CORES_NOTE = (
    "This machine has {cores} CPU cores: the replicas, the fake Slack, the fake model, "
    "PostgreSQL and Redis all share them, so 4 replicas measure contention, not scale."
)


async def _json(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> Any:
    async with session.request(method, url, **kw) as response:
        response.raise_for_status()
        return await response.json()


def replica_env(base: dict[str, str], servers: Servers, data_dir: Path) -> dict[str, str]:
    return {
        **base,
        "DATABASE_URL": servers.database_url,
        "REDIS_URL": servers.redis_url,
        "SECRET_KEY": SECRET_KEY,
        "DATA_DIR": str(data_dir),
        "HOST": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }


async def start_replicas(
    count: int, env: dict[str, str], scratch: Path, logs: Path
) -> list[tuple[procs.Child, str]]:
    started = []
    try:
        for n in range(count):
            port = procs.free_port()
            mine = {**env, "PORT": str(port), "DATA_DIR": str(scratch / f"replica{count}-{n}")}
            child, _ = procs.start(f"replica{count}-{n}", ["-m", "bot", "run"], env=mine, logs=logs)
            started.append((child, f"http://127.0.0.1:{port}"))
        for child, url in started:
            await procs.wait_healthy(f"{url}/healthz", child)
    except BaseException:
        for child, _ in started:
            child.stop()
        raise
    return started


async def run_scale(options: argparse.Namespace, servers: Servers, scratch: Path) -> dict[str, Any]:
    logs = scratch / "logs"
    workspaces = QUICK_WORKSPACES if options.quick else max(w for _, w in SCENARIOS)
    model, model_url = procs.start(
        "model", ["-m", "bench.e2e.model"], logs=logs, ready_prefix="BENCH_MODEL_URL"
    )
    children = [model]
    rows: list[dict[str, Any]] = []
    try:
        fake, platform_url = procs.start(
            "slack",
            ["-m", "bench.scale_slack", f"--workspaces={workspaces}", f"--speedup={SPEEDUP}"],
            logs=logs,
            ready_prefix="BENCH_PLATFORM_URL",
        )
        children.append(fake)
        assert platform_url is not None
        knowledge = scratch / "knowledge"
        shutil.copytree(bundled("knowledge"), knowledge)
        timeout = aiohttp.ClientTimeout(total=DEADLINE * 2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            base = await _json(session, "GET", f"{platform_url}/bench/env")
            base.update(
                OPENAI_BASE_URL=str(model_url),
                OPENAI_API_KEY="sk-bench-0000000000000000",
                KNOWLEDGE_DIR=str(knowledge),
            )
            env = replica_env(base, servers, scratch / "ingest")
            subprocess.run(
                [sys.executable, "-m", "bot", "ingest"],
                env={**os.environ, **env},
                check=True,
                capture_output=True,
            )
            installed = False
            for count in (int(r) for r in options.replicas.split(",")):
                replicas = await start_replicas(count, env, scratch, logs)
                try:
                    urls = [url for _, url in replicas]
                    if not installed:  # once: the installations live in the shared database
                        body = {"bot_url": urls[0], "workspaces": workspaces}
                        await _json(session, "POST", f"{platform_url}/bench/install", json=body)
                        installed = True
                    # Each replica's first answer loads the local embedding model (seconds of
                    # CPU): one question each, not measured, so the runs see warm replicas.
                    warm = {**WARM_UP, "bot_urls": urls, "questions": count}
                    await _json(session, "POST", f"{platform_url}/bench/run", json=warm)
                    for scenario, spread in SCENARIOS:
                        spread = min(spread, workspaces)
                        label = f"{spread} workspace{'s' if spread > 1 else ''}"
                        await asyncio.sleep(SETTLE)
                        others = {"model": model, "slack": fake}
                        before, machine_before = _cpu(replicas, others, servers), busy_seconds()
                        result = await _json(
                            session,
                            "POST",
                            f"{platform_url}/bench/run",
                            json={
                                "bot_urls": urls,
                                "workspaces": spread,
                                "questions": options.questions,
                                "rate": options.rate,
                                "deadline": DEADLINE,
                            },
                        )
                        after, machine_after = _cpu(replicas, others, servers), busy_seconds()
                        cpu = {k: after[k] - before[k] for k in after}
                        rss = [child.peak_rss_mb() for child, _ in replicas]
                        row = summarize(result, cpu=cpu, rss_mb=rss)
                        # Cores busy on the machine meanwhile, and how many of them not ours.
                        wall = machine_after[1] - machine_before[1]
                        row["machine_busy_cores"] = (machine_after[0] - machine_before[0]) / wall
                        row["outside_cores"] = row["machine_busy_cores"] - sum(cpu.values()) / wall
                        row.update(scenario=scenario, scenario_label=label, replicas=count)
                        rows.append(row)
                        print(_line(row), flush=True)
                finally:
                    for child, _ in replicas:
                        child.stop()
            if options.no_memory:
                return {"rows": rows, "memory": []}
            memory = await measure_memory(
                env=env,
                servers=servers,
                platform_url=platform_url,
                session=session,
                scratch=scratch,
                chunks=QUICK_CHUNKS if options.quick else options.chunks,
            )
    finally:
        for child in reversed(children):
            child.stop()
    return {"rows": rows, "memory": memory}


def _cpu(
    replicas: list[tuple[procs.Child, str]], others: dict[str, procs.Child], servers: Servers
) -> dict[str, float]:
    found = {"replicas": sum(child.cpu_seconds() for child, _ in replicas)}
    found.update({name: child.cpu_seconds() for name, child in others.items()})
    found.update(servers.cpu())
    return found


def _line(row: dict[str, Any]) -> str:
    return (
        f"{row['scenario_label']:<14} R={row['replicas']} answered {row['answered']}/"
        f"{row['questions']} {row['answers_per_s']:.2f}/s | first visible p50/p95 "
        f"{row['first_visible_p50']:.2f}/{row['first_visible_p95']:.2f} s | final p50/p95 "
        f"{row['to_final_p50']:.1f}/{row['to_final_p95']:.1f} s | 429s {row['rate_limited']} "
        f"early {row['retry_after_violations']} | CPU {row['cpu_s_per_answer']:.3f} s/answer "
        f"| RSS {row['peak_rss_mb']:.0f} MB | machine {row['machine_busy_cores']:.2f} cores busy, "
        f"{row['outside_cores']:.2f} of them outside the bench"
    )


def markdown(results: dict[str, Any]) -> str:
    info = results["machine"]
    s = results["settings"]
    return "\n".join(
        [
            f"Machine: {describe_machine(info)}",
            "",
            CORES_NOTE.format(cores=info["cores"]),
            "",
            f"## Replicas: {s['questions']} questions at {s['rate']:g} a second",
            "",
            table(results["rows"]),
            "",
            "## One replica's memory",
            "",
            memory_table(results["memory"]),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke test: fewer of everything")
    parser.add_argument("--replicas", default="1,2,4")
    parser.add_argument("--questions", type=int, default=QUESTIONS)
    parser.add_argument("--rate", type=float, default=RATE, help="questions offered per second")
    parser.add_argument("--chunks", type=int, default=100_000, help="the big index's size")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory figure")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--keep", help="keep logs and data in this folder")
    options = parser.parse_args(argv)
    if options.quick:
        options.replicas, options.questions = QUICK_REPLICAS, QUICK_QUESTIONS
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    info = machine()
    print(CORES_NOTE.format(cores=info["cores"]), flush=True)
    began = time.monotonic()
    servers = Servers.start("bench_scale")
    try:
        with tempfile.TemporaryDirectory(prefix="answerbot-scale-") as scratch_dir:
            scratch = Path(options.keep) if options.keep else Path(scratch_dir)
            found = asyncio.run(run_scale(options, servers, scratch))
    finally:
        servers.stop()
    results = {
        "machine": info,
        "settings": {**vars(options), "speedup": SPEEDUP, "scenarios": SCENARIOS},
        "seconds": time.monotonic() - began,
        **found,
    }
    (out / "scale.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "scale.md").write_text(markdown(results))
    plot(results["rows"], out / "scale.png", describe_machine(info))
    print(memory_table(results["memory"]), flush=True)
    print(f"wrote {out}/scale.json, scale.md and scale.png in {results['seconds']:.0f} s")


if __name__ == "__main__":
    main()
