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


class SlowReplies:
    """A loopback TCP proxy to Redis that holds Redis's replies `delay` seconds: what a replica
    whose event loop is busy sees (it hears the grant late, after Redis stamped it)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.delay = 0.0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)

        async def pipe(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, slow: bool
        ) -> None:
            while data := await source.read(65536):
                if slow and self.delay:
                    await asyncio.sleep(self.delay)
                sink.write(data)
                await sink.drain()
            sink.close()

        await asyncio.gather(
            pipe(reader, upstream_writer, False),
            pipe(upstream_reader, writer, True),
            return_exceptions=True,
        )

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_a_grant_heard_late_still_counts_from_when_the_platform_got_the_call(
    redis_url: str,
) -> None:
    # Redis stamps a grant when the script runs; a replica that hears it 0.3 s later calls the
    # platform then. Counted from Redis's stamp plus the call's own time, the shared window
    # would free that slot 0.3 s before the platform does, and another replica's call would
    # land inside the platform's window: a 429.
    from urllib.parse import urlsplit

    address = urlsplit(redis_url)
    proxy = SlowReplies((address.hostname or "127.0.0.1", address.port or 6379))
    port = await proxy.start()
    busy = await process(redis_url.replace(f":{address.port}/", f":{port}/"))
    idle = await process(redis_url)
    spec = BudgetSpec("slack:T1:late", 3, 1.0)
    try:
        late, prompt = (
            SharedBudgets(LoopClock(), busy).get(spec),
            SharedBudgets(LoopClock(), idle).get(spec),
        )
        calls: list[float] = []  # when each call reached the platform
        proxy.delay = 0.3
        for _ in range(3):  # each ask also tells Redis that the one before came back
            await take(late, urgent(), calls)
        await asyncio.gather(take(prompt, urgent(), calls), take(prompt, urgent(), calls))
    finally:
        await busy.close()
        await idle.close()
        await proxy.close()

    assert len(calls) == 5
    assert most_in_any_window(calls, spec.window) <= spec.rate


async def test_a_call_that_came_back_frees_its_shared_slot_though_its_replica_asks_no_more(
    two: tuple[SharedBudgets, SharedBudgets],
) -> None:
    # A replica that answered one question and then sat idle must still tell Redis that its
    # call came back: until then the call holds the slot for every replica as if in flight,
    # for up to its arrival bound (Slack: 30 s).
    spec = BudgetSpec("slack:T1:idle", 1, 0.5)
    first, second = (budgets.get(spec) for budgets in two)
    calls: list[float] = []
    await take(first, urgent(), calls)

    await asyncio.wait_for(take(second, urgent(), calls), timeout=5.0)

    assert calls[1] - calls[0] >= spec.window  # and still a window apart at the platform


async def test_a_write_asked_for_while_redis_hears_of_the_last_one_is_not_forgotten(
    redis_url: str,
) -> None:
    # An answer's edit comes back and the replica tells Redis so; the answer's next edit is
    # asked for during that round trip. It must go as soon as the window allows, not wait for
    # some other call in the workspace to wake the budget (the scale bench lost an answer so).
    from urllib.parse import urlsplit

    address = urlsplit(redis_url)
    proxy = SlowReplies((address.hostname or "127.0.0.1", address.port or 6379))
    port = await proxy.start()
    slow = await process(redis_url.replace(f":{address.port}/", f":{port}/"))
    try:
        budget = SharedBudgets(LoopClock(), slow).get(BudgetSpec("slack:T1:next", 10, 1.0))
        calls: list[float] = []
        await take(budget, urgent(), calls)
        proxy.delay = 0.3  # the report of that call is now on its way
        await asyncio.sleep(0.05)
        await asyncio.wait_for(take(budget, urgent(), calls), timeout=5.0)
    finally:
        await slow.close()
        await proxy.close()

    assert len(calls) == 2
