"""Shared platform rate budgets: who may call the platform next, and when.

One `Budget` per key (Slack's workspace-wide chat.update, a channel's chat.postMessage, a Discord
channel's create/edit), shared by every answer that names the key. A sliding-window log
guarantees that no window of `window` seconds ever carries more than `rate` calls: that is the
platform's limit, and nothing goes past it. Within it, the writes a user waits for and the
writes that only show progress are treated differently:

- placeholders, first visible text and final text go out as soon as the window has room, so
  twenty questions at once in one Slack workspace all show text within a round trip or two
  instead of queueing behind an even pace (the benchmark's floor is exactly this);
- interim edits are spread evenly by a token bucket holding `BURST` calls (Slack's 50 a minute:
  one every 1.2 s), pay for the urgent writes' share too, and leave room in every window for
  the final texts still owed: one per answer in progress on the budget (`owe`/`settle`), and
  never less than `RESERVE_SHARE` of the window.

Waiters are served by rank, evaluated at the moment a call is granted (so an answer whose final
text arrived while it queued is promoted): placeholders first, then first visible text and final
writes, then interim edits, the one that has waited longest since its last visible update first.
A 429 pauses the whole budget for its Retry-After. Each budget runs one dispatcher task while
anyone waits; callers are the answers' own tasks.

The registry forgets a budget once it is idle (see `Budget.idle`: a fresh one would behave the
same) and nobody holds it, so keys that come and go (the web chat's two per page) do not pile up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import IntEnum

from bot.streaming.clock import Clock
from bot.surface import BudgetSpec

log = logging.getLogger(__name__)

# Interim edits that may go out back to back before the even spacing applies.
BURST = 2
# The least share of a window interim edits leave free for first and final texts.
RESERVE_SHARE = 0.2
# Calls in flight at once: interim edits stop at the burst (more would only queue at the
# platform); writes a user is waiting for may overlap further, so twenty first texts are not
# serialised behind each other's round trips.
URGENT_IN_FLIGHT = 8
# How far urgent writes may run the interim bucket into debt, in calls: past a window's worth,
# the debt would outlast the window that made it.
MAX_DEBT_WINDOWS = 1
# Float slack when comparing refilled tokens against one whole call.
EPSILON = 1e-9
# Budgets the registry holds before it first looks for idle ones to let go; after each look, it
# looks again once it holds twice what it kept, so looking costs O(1) per new budget.
SWEEP_FLOOR = 16


class Priority(IntEnum):
    """Classes of writes, most urgent first."""

    PLACEHOLDER = 0  # the answer's first post: the user sees the question was taken
    URGENT = 1  # an answer's first visible text, and its final writes
    INTERIM = 2  # everything in between; fewer of these is fine


# (priority, since): lower sorts first; `since` orders within a class (oldest first).
Rank = tuple[Priority, float]
# Told, for each call granted, its budget, its priority then and the seconds it waited.
WaitObserver = Callable[[BudgetSpec, Priority, float], None]


@dataclass(eq=False)
class _Call:
    """A granted call's place in the window: it counts from when its response came back
    (infinity while in flight). The platform counts a call when the request reaches it, which
    is before the response returns; counting from the grant instead would let jitter in the
    requests' travel time put two calls closer together at the platform than the window. A
    response held longer than its budget's `arrival_bound` is the client library's doing
    (discord.py sleeps out an exhausted bucket before it returns), not the request's travel: the
    platform counted the call well before, so it counts from the grant plus that bound."""

    granted: float
    at: float = math.inf
    unused: bool = False
    shared: str | None = None  # its name in a shared window (bot.streaming.shared_budget)
    asked: float | None = None  # when this process asked the shared window for it

    def not_made(self) -> None:
        """The holder found nothing to send after all: the slot goes back to the budget."""
        self.unused = True


@dataclass(eq=False)
class _Waiter:
    rank: Callable[[], Rank]
    seq: int
    future: asyncio.Future[None] = field(repr=False)
    call: _Call | None = None


class Budget:
    """At most `spec.rate` calls per `spec.window` seconds, granted by rank, shared by key."""

    def __init__(
        self, spec: BudgetSpec, clock: Clock, on_use: Callable[[Budget], None] | None = None
    ) -> None:
        self.spec = spec
        # Told whenever the budget may stop being idle (the registry holds it again).
        self._on_use = on_use
        self.burst = max(1, min(spec.rate, BURST))
        self.max_in_flight = max(self.burst, URGENT_IN_FLIGHT)
        self._clock = clock
        self._interval = spec.window / spec.rate
        self._min_reserve = math.ceil(spec.rate * RESERVE_SHARE)
        self._owed = 0  # answers in progress that will make a final write here
        self._tokens = float(self.burst)
        self._refilled_at: float | None = None
        self._recent: list[_Call] = []  # calls in flight or in the last window
        self._paused_until = -math.inf
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        self._in_flight = 0
        # Set whenever the dispatcher might now grant someone: an arrival, a call finished, a
        # rank that may have risen.
        self._changed = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self.granted = 0
        self.rate_limited = 0
        self.on_wait: WaitObserver | None = None  # told how long each granted call waited

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @asynccontextmanager
    async def slot(self, rank: Callable[[], Rank]) -> AsyncIterator[_Call]:
        """Wait for a grant (by `rank`, re-read at grant time), then hold it for one call; call
        `not_made()` on what it yields if no call was made (it then costs nothing)."""
        asked = self._clock.monotonic()
        call = await self._acquire(rank)
        if self.on_wait is not None:
            self.on_wait(self.spec, rank()[0], self._clock.monotonic() - asked)
        try:
            yield call
        finally:
            self._done(call)

    def idle(self, now: float) -> bool:
        """Whether a budget made afresh would behave exactly like this one: nobody waits, calls
        or owes a final here, no Retry-After pause is pending, no call is left in the window
        and the interim bucket has refilled."""
        if self._waiters or self._dispatcher is not None or self._in_flight or self._owed:
            return False
        if self._paused_until > now:
            return False
        if any(call.at > now - self.spec.window for call in self._recent):
            return False
        tokens = self._tokens
        if self._refilled_at is not None:
            tokens += (now - self._refilled_at) / self._interval
        return tokens >= self.burst - EPSILON

    def owe(self) -> None:
        """An answer started that will make one final write on this budget."""
        self._used()
        self._owed += 1

    def settle(self) -> None:
        """That answer ended (its final write made or abandoned)."""
        self._owed = max(0, self._owed - 1)
        self._changed.set()

    @property
    def _interim_cap(self) -> int:
        """Calls a window may hold before interim edits must wait: the rest is kept for the
        finals owed (once many answers are in progress, interim edits stop)."""
        return max(1, self.spec.rate - max(self._min_reserve, self._owed))

    def reconsider(self) -> None:
        """A waiter's rank may have risen (its answer ended): look at the queue again now
        rather than when the next interim edit would have been allowed."""
        self._changed.set()

    def pause(self, seconds: float) -> None:
        """A 429 said Retry-After: nobody sharing this budget calls before it has passed."""
        self._used()
        self.rate_limited += 1
        until = self._clock.monotonic() + max(0.0, seconds)
        if until > self._paused_until:
            self._paused_until = until
            log.info("budget %s paused for %.1fs", self.spec.key, seconds)

    def _wake(self) -> None:
        """Something changed that the dispatcher must look at: tell it, starting it if idle."""
        self._changed.set()
        if self._dispatcher is None:
            self._dispatcher = asyncio.create_task(self._dispatch(), name=f"budget {self.spec.key}")

    def _used(self) -> None:
        if self._on_use is not None:
            self._on_use(self)

    def _done(self, call: _Call) -> None:
        call.at = min(self._clock.monotonic(), call.granted + self.spec.arrival_bound)
        if call.unused and call in self._recent:
            self._recent.remove(call)
            self._tokens = min(float(self.burst), self._tokens + 1.0)
            self.granted -= 1
        self._in_flight -= 1
        self._changed.set()

    async def _acquire(self, rank: Callable[[], Rank]) -> _Call:
        self._used()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(rank, next(self._seq), future)
        self._waiters.append(waiter)
        self._wake()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # Granted just as the caller was cancelled: hand the slot back.
                assert waiter.call is not None
                self._done(waiter.call)
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise
        assert waiter.call is not None
        return waiter.call

    async def _dispatch(self) -> None:
        try:
            while self._waiters:
                now = self._clock.monotonic()
                waiter, ready = self._next(now)
                if waiter is None:
                    await self._wait(ready - now)
                    continue
                self._grant(waiter, now)
        finally:
            self._dispatcher = None

    async def _wait(self, seconds: float) -> None:
        """Nobody may go yet: sleep until someone may, or until something changes (a newcomer
        may be urgent and allowed at once)."""
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(None if math.isinf(seconds) else seconds):
                await self._changed.wait()

    def _grant(self, waiter: _Waiter, now: float, shared: str | None = None) -> None:
        self._waiters.remove(waiter)
        if waiter.future.done():
            return
        waiter.call = self._spend(now)
        waiter.call.shared = shared
        self._in_flight += 1
        waiter.future.set_result(None)

    def _next(self, now: float) -> tuple[_Waiter | None, float]:
        """The best-ranked waiter allowed to call now, or None and when the first one will be
        (infinity: when a call in flight returns)."""
        allowed, soonest = self._candidates(now)
        if not allowed:
            return None, soonest
        return min(allowed.values(), key=lambda ranked: ranked[0])[1], now

    def _candidates(
        self, now: float
    ) -> tuple[dict[Priority, tuple[tuple[Rank, int], _Waiter]], float]:
        """Per class, the best-ranked waiter allowed to call now (with its rank); and when the
        first of the others will be (infinity: when a call in flight returns)."""
        if self._in_flight >= self.max_in_flight:
            return {}, math.inf
        self._refill(now)
        # The window's calls, sorted, once per decision (each class reads them).
        in_window = sorted(c.at for c in self._recent if c.at > now - self.spec.window)
        ready = {cls: self._ready_at(now, cls, in_window) for cls in Priority}
        if self._in_flight >= self.burst:
            ready[Priority.INTERIM] = math.inf  # until a call in flight returns
        allowed: dict[Priority, tuple[tuple[Rank, int], _Waiter]] = {}
        soonest = math.inf
        for waiter in self._waiters:
            rank = waiter.rank()
            if ready[rank[0]] > now:
                soonest = min(soonest, ready[rank[0]])
                continue
            best = allowed.get(rank[0])
            if best is None or (rank, waiter.seq) < best[0]:
                allowed[rank[0]] = ((rank, waiter.seq), waiter)
        return allowed, soonest

    def _refill(self, now: float) -> None:
        if self._refilled_at is not None:
            gained = (now - self._refilled_at) / self._interval
            self._tokens = min(float(self.burst), self._tokens + gained)
        self._refilled_at = now

    def _ready_at(self, now: float, priority: Priority, in_window: list[float]) -> float:
        ready = max(now, self._paused_until)
        cap = self._interim_cap if priority is Priority.INTERIM else self.spec.rate
        if priority is not Priority.URGENT and self._tokens < 1.0 - EPSILON:
            ready = max(ready, now + (1.0 - self._tokens) * self._interval)
        if len(in_window) >= cap:
            # Enough of the calls in the window must leave it to get under this class's cap.
            ready = max(ready, in_window[len(in_window) - cap] + self.spec.window)
        return ready

    def _spend(self, now: float) -> _Call:
        self._tokens = max(-self.spec.rate * MAX_DEBT_WINDOWS, self._tokens - 1.0)
        call = _Call(granted=now)
        self._recent = [c for c in self._recent if c.at > now - self.spec.window]
        self._recent.append(call)
        self.granted += 1
        return call


class Budgets:
    """The registry: one shared `Budget` per key, created on first use, forgotten when idle.

    Every budget is held strongly until a sweep finds it idle; from then on only its users hold
    it (weakly listed here, so `get` still returns the same one to a second answer on the key,
    and two budgets never share a key). Using it again (a wait, an owed final, a pause) holds it
    again; once nobody holds an idle budget, it is gone, and the next `get` makes a fresh one.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._held: dict[str, Budget] = {}
        self._live: weakref.WeakValueDictionary[str, Budget] = weakref.WeakValueDictionary()
        self._sweep_at = SWEEP_FLOOR
        self.on_wait: WaitObserver | None = None  # given to every budget (the metrics set it)

    def __len__(self) -> int:
        """Budgets that still exist: held here, or idle but still held by an answer."""
        return len(self._live)

    def get(self, spec: BudgetSpec) -> Budget:
        budget = self._live.get(spec.key)
        if budget is None:
            if len(self._held) >= self._sweep_at:
                self.sweep()
            budget = self._make(spec)
            self._live[spec.key] = budget
        elif budget.spec != spec:
            log.debug("budget %s already exists as %s; ignoring %s", spec.key, budget.spec, spec)
        budget.on_wait = self.on_wait
        self._hold(budget)
        return budget

    def sweep(self) -> int:
        """Let go of the idle budgets; returns how many are still held."""
        now = self._clock.monotonic()
        for key, budget in list(self._held.items()):
            if budget.idle(now):
                del self._held[key]
        self._sweep_at = max(SWEEP_FLOOR, 2 * len(self._held))
        return len(self._held)

    def _make(self, spec: BudgetSpec) -> Budget:
        return Budget(spec, self._clock, self._hold)

    def all(self) -> list[Budget]:
        return list(self._live.values())

    def _hold(self, budget: Budget) -> None:
        self._held[budget.spec.key] = budget
