"""Rate budgets shared through Redis: two processes (two registries, each with its own Redis
client) on one key never exceed the rate together, a Retry-After one of them gets pauses the
other, priorities hold, and a lost Redis leaves each process on its own budget."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

import pytest

from bot.shared import Shared
from bot.streaming.budget import Budget, Priority, Rank
from bot.streaming.clock import LoopClock
from bot.streaming.shared_budget import SharedBudgets
from bot.surface import BudgetSpec
from tests.redis_server import RedisServer
from tests.streaming.test_budget import interim, most_in_any_window, urgent

# Short windows keep these tests quick in real time (Redis's clock can't be made virtual).
SPEC = BudgetSpec("slack:T1:update", 6, 1.0)
HOLD = 0.02  # seconds a call takes at the platform


async def process(url: str) -> Shared:
    """What one replica holds: its own client to the shared Redis."""
    import redis.asyncio

    return Shared(redis.asyncio.from_url(url), "test")


@pytest.fixture
async def two(redis_url: str) -> AsyncIterator[tuple[SharedBudgets, SharedBudgets]]:
    first, second = await process(redis_url), await process(redis_url)
    yield SharedBudgets(LoopClock(), first), SharedBudgets(LoopClock(), second)
    await first.close()
    await second.close()


async def take(budget: Budget, rank: Callable[[], Rank], log: list[float]) -> None:
    async with budget.slot(rank):
        log.append(time.monotonic())
        await asyncio.sleep(HOLD)


async def test_two_processes_together_never_exceed_the_rate_in_any_window(
    two: tuple[SharedBudgets, SharedBudgets],
) -> None:
    grants: list[float] = []

    async def answer(budget: Budget, index: int) -> None:
        rank = urgent() if index % 2 else interim()  # urgent writes skip the even pacing
        for _ in range(3):
            await take(budget, rank, grants)

    first, second = (budgets.get(SPEC) for budgets in two)
    await asyncio.gather(*(answer(b, i) for b in (first, second) for i in range(4)))

    assert len(grants) == 24
    # Each process alone would allow 6 a second; the two of them share those 6.
    assert most_in_any_window(grants, SPEC.window) <= SPEC.rate


async def test_a_retry_after_one_process_got_pauses_the_other(
    two: tuple[SharedBudgets, SharedBudgets],
) -> None:
    first, second = (budgets.get(SPEC) for budgets in two)
    log: list[float] = []
    await take(first, urgent(), log)
    paused_at = time.monotonic()
    first.pause(0.5)  # the platform answered 429 with Retry-After: 0.5
    await asyncio.sleep(0.05)  # the pause reaches Redis without waiting for a call of `first`

    await take(second, urgent(), log)

    assert log[1] >= paused_at + 0.5 - 0.05  # Redis's clock vs this host's: timer granularity


async def test_within_a_process_first_and_final_texts_go_before_interim_edits(
    two: tuple[SharedBudgets, SharedBudgets],
) -> None:
    first, second = (budgets.get(SPEC) for budgets in two)
    log: list[float] = []
    # The other process fills the window.
    await asyncio.gather(*(take(second, urgent(), log) for _ in range(SPEC.rate)))
    order: list[str] = []

    async def write(rank: Callable[[], Rank], what: str) -> None:
        async with first.slot(rank):
            order.append(what)

    interims = [asyncio.create_task(write(interim(), f"interim {n}")) for n in range(3)]
    await asyncio.sleep(0.05)  # queued first
    final = asyncio.create_task(write(lambda: (Priority.URGENT, 1.0), "final"))
    await asyncio.gather(*interims, final)

    assert order[0] == "final"


async def test_one_process_s_interim_edits_leave_room_for_the_finals_another_owes(
    two: tuple[SharedBudgets, SharedBudgets],
) -> None:
    first, second = (budgets.get(SPEC) for budgets in two)
    for _ in range(4):
        first.owe()  # four answers in progress there will each make a final write
    log: list[float] = []
    await take(first, urgent(), log)  # tells Redis what it owes

    interims: list[float] = []
    flood = [asyncio.create_task(take(second, interim(), interims)) for _ in range(6)]
    await asyncio.sleep(SPEC.window * 0.8)

    # 6 a window, 4 kept for the finals owed, 1 taken: one interim edit may go, not five.
    assert len(interims) == 1
    finals: list[float] = []
    await asyncio.gather(*(take(first, urgent(), finals) for _ in range(4)))
    assert len(interims) == 1  # the finals went first
    for _ in range(4):
        first.settle()
    await asyncio.gather(*flood)


async def test_a_lost_redis_leaves_each_process_on_its_own_budget_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = RedisServer.start()
    shared = await process(server.url())
    budgets = SharedBudgets(LoopClock(), shared)
    budget = budgets.get(SPEC)
    grants: list[float] = []
    try:
        await take(budget, urgent(), grants)
        server.stop()
        with caplog.at_level(logging.WARNING):
            await asyncio.gather(*(take(budget, urgent(), grants) for _ in range(12)))
    finally:
        await shared.close()
        server.stop()

    assert len(grants) == 13  # answers carry on
    assert most_in_any_window(grants, SPEC.window) <= SPEC.rate  # within this process's budget
    lost = [r for r in caplog.records if "stopped answering" in r.getMessage()]
    assert len(lost) == 1
