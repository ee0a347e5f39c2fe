"""What one replica costs in memory: the RSS of a `bot run` process after it has started (the
shared index loaded: chunks and vectors from PostgreSQL, and with KEYWORD_SEARCH=bm25 the BM25
index built) and after it has answered one question (the local embedding model loaded), with a
100k-chunk index against the small bundled guide, keyword search both ways.

The big index is synthesised as `bench/knowledge_keywords.py` does it (filler passages of 120
words drawn from a corpus's own word frequencies, random unit vectors, 1.6 per passage as the
local model's windows give, written straight into PostgreSQL), on top of the bundled guide that
`bot ingest` indexed for real; its refresh of the Bolt docs is left out (minutes on this machine).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.e2e import procs
from bench.knowledge_keywords import add_filler
from bench.scale_servers import Servers

CHUNKS_SQL = """
SELECT count(*) FROM knowledge_chunks c
JOIN knowledge_files f ON f.path = c.path AND f.sha256 = c.sha256
JOIN knowledge_current k ON k.version_id = f.version_id
"""
MODES = ("bm25", "fulltext")


async def build_index(url: str, env: dict[str, str], total: int) -> int:
    """`bot ingest` of KNOWLEDGE_DIR into the database at `url`, then filler up to `total`
    chunks; returns the chunks indexed."""
    ingest = {**os.environ, **env, "DATABASE_URL": url}
    subprocess.run(
        [sys.executable, "-m", "bot", "ingest"], env=ingest, check=True, capture_output=True
    )
    await add_filler(url, Path(env["KNOWLEDGE_DIR"]), total - await _chunks(url))
    return await _chunks(url)


def _rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _chunks(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        return int(await connection.fetchval(CHUNKS_SQL))
    finally:
        await connection.close()


async def _one_replica(
    env: dict[str, str],
    platform_url: str,
    session: aiohttp.ClientSession,
    scratch: Path,
    name: str,
) -> dict[str, Any]:
    port = procs.free_port()
    env = {**env, "PORT": str(port), "DATA_DIR": str(scratch / name)}
    began = time.monotonic()
    child, _ = procs.start(name, ["-m", "bot", "run"], env=env, logs=scratch / "logs")
    url = f"http://127.0.0.1:{port}"
    try:
        await procs.wait_healthy(f"{url}/healthz", child)
        started = time.monotonic() - began
        rss_start = _rss_mb(child.pid, "VmRSS")
        # This database may hold no installation yet: one workspace installs through it.
        async with session.post(
            f"{platform_url}/bench/install", json={"bot_url": url, "workspaces": 1}
        ) as response:
            response.raise_for_status()
        run = {"bot_urls": [url], "workspaces": 1, "questions": 1, "rate": 1.0, "deadline": 60.0}
        async with session.post(f"{platform_url}/bench/run", json=run) as response:
            response.raise_for_status()
            result = await response.json()
        return {
            "start_s": started,
            "rss_start_mb": rss_start,
            "rss_answered_mb": _rss_mb(child.pid, "VmRSS"),
            "peak_rss_mb": _rss_mb(child.pid, "VmHWM"),
            "answered": result["conversations"][0]["exact"],
        }
    finally:
        child.stop()


async def measure_memory(
    *,
    env: dict[str, str],
    servers: Servers,
    platform_url: str,
    session: aiohttp.ClientSession,
    scratch: Path,
    chunks: int,
) -> list[dict[str, Any]]:
    """Rows for the small index (the scale run's database) and a `chunks`-chunk one, each with
    KEYWORD_SEARCH=bm25 and fulltext; one fresh replica per row."""
    big_url = servers.postgres.create_database("bench_scale_big")
    began = time.monotonic()
    built = await build_index(big_url, env, chunks)
    print(f"built a {built:,}-chunk index in {time.monotonic() - began:.0f} s", flush=True)
    rows: list[dict[str, Any]] = []
    for index, url in (("bundled guide", servers.database_url), (f"{built:,} chunks", big_url)):
        for mode in MODES:
            mine = {**env, "DATABASE_URL": url, "KEYWORD_SEARCH": mode}
            name = f"memory-{len(rows)}"
            row = await _one_replica(mine, platform_url, session, scratch, name)
            row.update(index=index, keyword_search=mode, chunks=await _chunks(url))
            rows.append(row)
            print(
                f"memory: {index}, {mode}: {row['rss_start_mb']:.0f} MB after start, "
                f"{row['rss_answered_mb']:.0f} MB after one answer, peak {row['peak_rss_mb']:.0f}",
                flush=True,
            )
    return rows
