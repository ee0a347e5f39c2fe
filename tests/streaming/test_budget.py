"""Shared rate budgets: window limits, even spacing, priorities, 429 pauses, bounded concurrency."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable

import pytest

from bot.streaming.budget import Budget, Budgets, Priority, Rank
from bot.streaming.clock import VirtualClock
from bot.surface import BudgetSpec

SLACK_UPDATE = BudgetSpec("slack:T1:update", 50, 60.0)
DISCORD_CHANNEL = BudgetSpec("discord:1:2", 5, 5.0)


def most_in_any_window(times: list[float], window: float) -> int:
    """The most calls any half-open window [t, t + window) holds, checked at every call."""
    times = sorted(times)
    return max(sum(1 for u in times if t <= u < t + window) for t in times)


def interim(since: float = 0.0) -> Callable[[], Rank]:
    return lambda: (Priority.INTERIM, since)


def urgent(since: float = 0.0) -> Callable[[], Rank]:
    return lambda: (Priority.URGENT, since)


async def take(
    budget: Budget,
    rank: Callable[[], Rank],
    log: list[float],
    clock: VirtualClock,
    hold: float = 0.1,
) -> None:
    async with budget.slot(rank):
        log.append(clock.monotonic())
        await clock.sleep(hold)


@pytest.mark.parametrize("spec", [SLACK_UPDATE, DISCORD_CHANNEL, BudgetSpec("post", 1, 1.0)])
def test_no_window_ever_carries_more_than_the_rate(spec: BudgetSpec) -> None:
    clock = VirtualClock()
    grants: list[float] = []

    async def main() -> None:
        budget = Budget(spec, clock)

        async def answer(index: int) -> None:
            # Half the answers make only urgent writes, which skip the even pacing.
            rank = urgent() if index % 2 else interim()
            for _ in range(15):
                await take(budget, rank, grants, clock)

        await asyncio.gather(*(answer(i) for i in range(20)))

    clock.run(main())
    assert len(grants) == 300
    assert most_in_any_window(grants, spec.window) <= spec.rate


def test_interim_edits_are_spread_evenly_and_leave_a_reserve() -> None:
    clock = VirtualClock()
    grants: list[float] = []

    async def main() -> None:
        budget = Budget(SLACK_UPDATE, clock)
        await asyncio.gather(*(take(budget, interim(), grants, clock) for _ in range(60)))

    clock.run(main())
    # Never more than two back to back; then one per 1.2 s rather than 50 at once and a minute
    # of silence; and never more than 40 in a minute, the last fifth kept for first/final texts.
    assert most_in_any_window(grants, 60.0 / 50) <= 2
    assert most_in_any_window(grants, 60.0) == 40
    assert grants[39] < 48.0
    assert grants[-1] < 90.0


def test_first_and_final_texts_go_out_as_soon_as_the_window_has_room() -> None:
    clock = VirtualClock()
    grants: list[float] = []

    async def main() -> None:
        budget = Budget(SLACK_UPDATE, clock)
        # Twenty answers' first texts at once: the window holds 50, so none waits for a pace.
        await asyncio.gather(*(take(budget, urgent(), grants, clock) for _ in range(20)))

    clock.run(main())
    # Two in flight at a time, 0.1 s each: the twentieth is out after ten round trips.
    assert grants[-1] <= 1.0 + 1e-9


def test_urgent_writes_find_room_while_interim_edits_saturate_the_budget() -> None:
    clock = VirtualClock()
    urgent_grants: list[float] = []
    interim_grants: list[float] = []

    async def main() -> None:
        budget = Budget(SLACK_UPDATE, clock)

        async def streaming(index: int) -> None:
            while clock.monotonic() < 120.0:
                await take(budget, interim(float(index)), interim_grants, clock)

        async def finals() -> None:
            await clock.sleep(70.0)  # the window is as full as interim edits may make it
            await asyncio.gather(
                *(take(budget, urgent(70.0), urgent_grants, clock) for _ in range(10))
            )

        await asyncio.gather(*(streaming(i) for i in range(20)), finals())

    clock.run(main())
    everything = sorted(urgent_grants + interim_grants)
    assert most_in_any_window(everything, 60.0) <= 50
    # Ten final texts arriving into a saturated minute all land within a second.
    assert len(urgent_grants) == 10
    assert max(urgent_grants) <= 71.0


def test_placeholders_then_urgent_writes_then_fair_interim_edits() -> None:
    clock = VirtualClock()
    order: list[str] = []

    async def main() -> None:
        budget = Budget(BudgetSpec("k", 1, 1.0), clock)
        async with budget.slot(interim()):  # holds the budget while the others queue
            waiters = [
                ("interim-recent", (Priority.INTERIM, 50.0)),
                ("interim-oldest", (Priority.INTERIM, 10.0)),
                ("urgent", (Priority.URGENT, 30.0)),
                ("placeholder", (Priority.PLACEHOLDER, 40.0)),
            ]
            tasks = [
                asyncio.create_task(slot_then_log(budget, rank, name, order))
                for name, rank in waiters
            ]
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)

    async def slot_then_log(budget: Budget, rank: Rank, name: str, log: list[str]) -> None:
        async with budget.slot(lambda: rank):
            log.append(name)

    clock.run(main())
    assert order == ["placeholder", "urgent", "interim-oldest", "interim-recent"]


def test_rank_is_read_when_granting_so_a_final_write_is_promoted() -> None:
    clock = VirtualClock()
    order: list[str] = []
    finished = {"late": False}

    async def main() -> None:
        budget = Budget(BudgetSpec("k", 1, 1.0), clock)

        def late_rank() -> Rank:
            return (Priority.URGENT, 99.0) if finished["late"] else (Priority.INTERIM, 99.0)

        async def one(name: str, rank: Callable[[], Rank]) -> None:
            async with budget.slot(rank):
                order.append(name)

        async with budget.slot(interim()):
            tasks = [
                asyncio.create_task(one("early", interim(1.0))),
                asyncio.create_task(one("late", late_rank)),
            ]
            await asyncio.sleep(0)
            finished["late"] = True  # the answer finished while its edit was queued
        await asyncio.gather(*tasks)

    clock.run(main())
    assert order == ["late", "early"]


def test_a_429_pauses_everyone_sharing_the_budget() -> None:
    clock = VirtualClock()
    grants: list[float] = []

    async def main() -> None:
        budget = Budget(DISCORD_CHANNEL, clock)
        await take(budget, interim(), grants, clock)
        budget.pause(30.0)
        await asyncio.gather(*(take(budget, interim(), grants, clock) for _ in range(3)))

    clock.run(main())
    assert grants[0] == 0.0
    assert all(t >= 30.0 for t in grants[1:])


def test_calls_in_flight_never_exceed_the_burst() -> None:
    clock = VirtualClock()
    in_flight = {"now": 0, "most": 0}

    async def main() -> None:
        budget = Budget(BudgetSpec("k", 100, 1.0), clock)  # rate alone would allow 100 at once

        async def slow_call() -> None:
            async with budget.slot(interim()):
                in_flight["now"] += 1
                in_flight["most"] = max(in_flight["most"], in_flight["now"])
                await clock.sleep(5.0)  # a platform call that hangs for a while
                in_flight["now"] -= 1

        await asyncio.gather(*(slow_call() for _ in range(20)))

    clock.run(main())
    assert in_flight["most"] == 2


def test_a_cancelled_waiter_leaves_no_trace() -> None:
    clock = VirtualClock()
    grants: list[float] = []

    async def main() -> None:
        budget = Budget(BudgetSpec("k", 1, 10.0), clock)
        await take(budget, interim(), grants, clock)
        waiter = asyncio.create_task(take(budget, interim(), grants, clock))
        await clock.sleep(1.0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert budget.waiting == 0
        await take(budget, interim(), grants, clock)

    clock.run(main())
    # The window counts from when the first call returned (0.1 s), not from its grant.
    assert grants == [0.0, 10.1]


def test_the_registry_shares_one_budget_per_key() -> None:
    budgets = Budgets(VirtualClock())
    first = budgets.get(BudgetSpec("slack:T1:update", 50, 60.0))
    assert budgets.get(BudgetSpec("slack:T1:update", 50, 60.0)) is first
    assert budgets.get(BudgetSpec("slack:T2:update", 50, 60.0)) is not first


def test_a_call_counts_in_its_window_from_when_its_response_came_back() -> None:
    clock = VirtualClock()
    grants: list[float] = []

    async def main() -> None:
        budget = Budget(BudgetSpec("post", 1, 1.0, arrival_bound=1.0), clock)  # Discord's
        # The first request is slow to come back; the platform may have counted it at any point
        # until then, so the next may only follow a full window after the response.
        await asyncio.gather(
            take(budget, urgent(), grants, clock, hold=0.5),
            take(budget, urgent(), grants, clock),
        )
        # A response held far longer is the client library sleeping out a bucket after the
        # platform counted the call: it counts from its grant plus the bound, so the next
        # call need not wait a further window after the response.
        await clock.sleep(5.0)
        await asyncio.gather(
            take(budget, urgent(), grants, clock, hold=3.0),
            take(budget, urgent(), grants, clock),
        )

    clock.run(main())
    assert grants[:2] == [0.0, 1.5]
    slow = grants[2]
    assert grants[3] == slow + 3.0  # when the slow call returned; not slow + 3.0 + 1.0


def test_a_call_sent_long_after_its_grant_counts_from_when_it_reached_the_platform() -> None:
    # A replica's event loop is busy: a chat.update granted at 0 leaves 2 s later and is
    # counted by Slack then. slack_sdk holds no response back, so nothing caps the wait: the
    # next call may go a full window after that response, not a window after grant + 1 s.
    clock = VirtualClock()
    arrivals: list[float] = []

    async def late(budget: Budget) -> None:
        async with budget.slot(urgent()):
            await clock.sleep(2.0)  # the loop gets round to sending it
            arrivals.append(clock.monotonic())
            await clock.sleep(0.05)

    async def main() -> None:
        budget = Budget(BudgetSpec("slack:T1:chat.update", 1, 1.0), clock)
        await asyncio.gather(late(budget), take(budget, urgent(), arrivals, clock))

    clock.run(main())
    assert len(arrivals) == 2
    assert arrivals[1] - arrivals[0] >= 1.0  # never two in one of Slack's windows


# -- the registry forgets idle budgets (issue 13, item 13) ----------------------------------------


async def page_load(budgets: Budgets, number: int, clock: VirtualClock) -> None:
    """What one web chat page costs the registry: its socket names an edit and a post budget
    of its own, and the page's answer spends both."""
    for kind in ("edit", "post"):
        budget = budgets.get(BudgetSpec(f"web:{kind}:{number}", 20, 1.0))
        async with budget.slot(urgent()):
            await clock.sleep(0.01)


async def page_loads(budgets: Budgets, count: int, clock: VirtualClock) -> None:
    for number in range(count):
        await page_load(budgets, number, clock)
        await clock.sleep(0.1)  # ten page loads a second


def test_a_thousand_web_page_loads_leave_a_small_registry() -> None:
    clock = VirtualClock()
    budgets = Budgets(clock)
    clock.run(page_loads(budgets, 1000, clock))
    # 2,000 budgets were made; only those of the last second's pages may still count calls.
    assert len(budgets.all()) < 100


def test_busy_budgets_are_kept_while_idle_ones_go() -> None:
    clock = VirtualClock()
    budgets = Budgets(clock)
    paused_spec = BudgetSpec("slack:T1:update", 50, 60.0)
    waited_spec = BudgetSpec("discord:1:2", 1, 300.0)
    owed_spec = BudgetSpec("slack:T2:update", 50, 60.0)
    held_spec = BudgetSpec("discord:1:3", 5, 5.0)
    idle_spec = BudgetSpec("discord:1:4", 5, 5.0)
    grants: list[float] = []

    async def main() -> None:
        paused = budgets.get(paused_spec)
        await take(paused, urgent(), [], clock)
        paused.pause(60.0)  # a 429 said Retry-After: 60
        paused_ref = weakref.ref(paused)
        del paused
        waited = budgets.get(waited_spec)
        await take(waited, urgent(), [], clock)
        waiter = asyncio.create_task(take(waited, urgent(), [], clock))
        await clock.sleep(0)
        del waited
        owed = budgets.get(owed_spec)
        owed.owe()  # an answer in progress will make its final write here
        owed_ref = weakref.ref(owed)
        del owed
        held = budgets.get(held_spec)  # idle, but an answer between two edits holds it
        idle_ref = weakref.ref(budgets.get(idle_spec))

        await page_loads(budgets, 300, clock)  # 30 s: many sweeps
        gc.collect()
        assert len(budgets.all()) < 100
        assert idle_ref() is None  # nobody held it: forgotten

        assert budgets.get(held_spec) is held  # one budget per key while an answer holds it
        assert owed_ref() is not None and budgets.get(owed_spec) is owed_ref()
        assert budgets.get(waited_spec).waiting == 1
        assert paused_ref() is not None
        # The next answer on the paused key still waits out the Retry-After.
        await take(budgets.get(paused_spec), urgent(), grants, clock)
        waiter.cancel()

    clock.run(main())
    assert grants[0] >= 60.0


def test_a_budget_forgotten_while_an_answer_held_it_is_kept_again_when_paused() -> None:
    clock = VirtualClock()
    budgets = Budgets(clock)
    spec = BudgetSpec("discord:1:2", 5, 5.0)
    grants: list[float] = []

    async def main() -> None:
        held = budgets.get(spec)
        await page_loads(budgets, 100, clock)  # idle through the sweeps: no longer held there
        held.pause(30.0)  # then the answer holding it gets a 429
        pause_end = clock.now + 30.0
        del held
        await page_loads(budgets, 100, clock)  # 10 s, more sweeps
        assert len(budgets.all()) < 100
        await take(budgets.get(spec), urgent(), grants, clock)
        assert grants[0] >= pause_end

    clock.run(main())
