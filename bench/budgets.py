"""Rate budget throughput: grants (Budget.slot entered and left) per second from 20 concurrent
tasks on one key whose limit never binds, in process and through Redis (Debian's redis-server on
loopback, as tests/redis_server.py starts it). What sharing the budgets costs per platform call:
one Lua script round trip. Figures, not a test.

    .venv/bin/python -m bench.budgets
"""

from __future__ import annotations

import asyncio
import time

import redis.asyncio

from bot.shared import Shared
from bot.streaming.budget import Budgets, Priority
from bot.streaming.clock import LoopClock
from bot.streaming.shared_budget import SharedBudgets
from bot.surface import BudgetSpec
from tests.redis_server import RedisServer

TASKS = 20
PER_TASK = 500
# A limit that never binds (a million a second), over a window short enough that the window
# holds few calls: the figure is the bookkeeping's cost, not the platform's pace.
SPEC = BudgetSpec("bench:update", 1_000, 0.001)


async def _throughput(budgets: Budgets) -> float:
    budget = budgets.get(SPEC)

    async def task() -> None:
        for _ in range(PER_TASK):
            async with budget.slot(lambda: (Priority.URGENT, 0.0)):
                pass

    started = time.perf_counter()
    await asyncio.gather(*(task() for _ in range(TASKS)))
    return TASKS * PER_TASK / (time.perf_counter() - started)


async def _run(server: RedisServer) -> dict[str, float]:
    figures = {"in process": await _throughput(Budgets(LoopClock()))}
    shared = Shared(redis.asyncio.from_url(server.url()), "bench")
    try:
        figures["Redis"] = await _throughput(SharedBudgets(LoopClock(), shared))
    finally:
        await shared.close()
    return figures


def main() -> None:
    server = RedisServer.start()
    try:
        figures = asyncio.run(_run(server))
    finally:
        server.stop()
    for where, rate in figures.items():
        print(f"{where:10} {rate:9.0f} grants/s ({TASKS} concurrent tasks, one key)")


if __name__ == "__main__":
    main()
