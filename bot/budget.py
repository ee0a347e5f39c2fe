"""Shared platform rate budgets: who may call the platform next, and when.

One `Budget` per key (Slack's workspace-wide chat.update, a channel's chat.postMessage, a Discord
channel's create/edit), shared by every answer that names the key. Two limits hold at once: a
sliding-window log guarantees that no window of `window` seconds ever carries more than `rate`
calls, and a token bucket holding only `BURST` calls spreads the rest evenly: two calls may go
back to back (an answer's placeholder, then its first text), then one every window/rate seconds
(Slack's 50 a minute: one every 1.2 s, not 50 at once and then a minute of silence; a larger
bucket would let the log alternate bursts and stalls). A 429 pauses the whole budget for its
Retry-After.

Waiters are served by rank, evaluated at the moment a call is granted (so an answer whose final
text arrived while it queued is promoted): placeholders first, then first visible text and final
writes, then interim edits, the one that has waited longest since its last visible update first.
Each budget runs one dispatcher task while anyone waits; callers are the answers' own tasks.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import IntEnum

from bot.clock import Clock
from bot.surface import BudgetSpec

log = logging.getLogger(__name__)

# Calls that may go out back to back before the even spacing applies.
BURST = 2
# Float slack when comparing refilled tokens against one whole call.
EPSILON = 1e-9


class Priority(IntEnum):
    """Classes of writes, most urgent first."""

    PLACEHOLDER = 0  # the answer's first post: the user sees the question was taken
    URGENT = 1  # an answer's first visible text, and its final writes
    INTERIM = 2  # everything in between; fewer of these is fine


# (priority, since): lower sorts first; `since` orders within a class (oldest first).
Rank = tuple[Priority, float]


@dataclass(eq=False)
class _Waiter:
    rank: Callable[[], Rank]
    seq: int
    future: asyncio.Future[None] = field(repr=False)


class Budget:
    """At most `spec.rate` calls per `spec.window` seconds, granted by rank, shared by key."""

    def __init__(self, spec: BudgetSpec, clock: Clock) -> None:
        self.spec = spec
        self.burst = max(1, min(spec.rate, BURST))
        # Calls allowed in flight at once: the burst; more would only queue at the platform.
        self.max_in_flight = self.burst
        self._clock = clock
        self._interval = spec.window / spec.rate
        self._tokens = float(self.burst)
        self._refilled_at: float | None = None
        self._recent: deque[float] = deque(maxlen=spec.rate)
        self._paused_until = -math.inf
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        self._in_flight = 0
        self._released = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self.granted = 0
        self.rate_limited = 0

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @asynccontextmanager
    async def slot(self, rank: Callable[[], Rank]) -> AsyncIterator[None]:
        """Wait for a grant (by `rank`, re-read at grant time), then hold it for one call."""
        await self._acquire(rank)
        try:
            yield
        finally:
            self._in_flight -= 1
            self._released.set()

    def pause(self, seconds: float) -> None:
        """A 429 said Retry-After: nobody sharing this budget calls before it has passed."""
        self.rate_limited += 1
        until = self._clock.monotonic() + max(0.0, seconds)
        if until > self._paused_until:
            self._paused_until = until
            log.info("budget %s paused for %.1fs", self.spec.key, seconds)

    async def _acquire(self, rank: Callable[[], Rank]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(rank, next(self._seq), future)
        self._waiters.append(waiter)
        if self._dispatcher is None:
            self._dispatcher = asyncio.create_task(self._dispatch(), name=f"budget {self.spec.key}")
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # Granted just as the caller was cancelled: hand the slot back.
                self._in_flight -= 1
                self._released.set()
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    async def _dispatch(self) -> None:
        try:
            while self._waiters:
                if self._in_flight >= self.max_in_flight:
                    self._released.clear()
                    await self._released.wait()
                    continue
                now = self._clock.monotonic()
                ready = self._ready_at(now)
                if ready > now:
                    await self._clock.sleep(ready - now)
                    continue
                waiter = min(self._waiters, key=lambda w: (w.rank(), w.seq))
                self._waiters.remove(waiter)
                if waiter.future.done():
                    continue
                self._spend(now)
                self._in_flight += 1
                waiter.future.set_result(None)
        finally:
            self._dispatcher = None

    def _refill(self, now: float) -> None:
        if self._refilled_at is not None:
            gained = (now - self._refilled_at) / self._interval
            self._tokens = min(float(self.burst), self._tokens + gained)
        self._refilled_at = now

    def _ready_at(self, now: float) -> float:
        self._refill(now)
        ready = max(now, self._paused_until)
        if self._tokens < 1.0 - EPSILON:
            ready = max(ready, now + (1.0 - self._tokens) * self._interval)
        if len(self._recent) == self.spec.rate:
            # The oldest of the last `rate` calls must leave the window first.
            ready = max(ready, self._recent[0] + self.spec.window)
        return ready

    def _spend(self, now: float) -> None:
        self._tokens = max(0.0, self._tokens - 1.0)
        self._recent.append(now)
        self.granted += 1


class Budgets:
    """The registry: one shared `Budget` per key, created on first use."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._budgets: dict[str, Budget] = {}

    def get(self, spec: BudgetSpec) -> Budget:
        budget = self._budgets.get(spec.key)
        if budget is None:
            budget = self._budgets[spec.key] = Budget(spec, self._clock)
        elif budget.spec != spec:
            log.debug("budget %s already exists as %s; ignoring %s", spec.key, budget.spec, spec)
        return budget

    def all(self) -> list[Budget]:
        return list(self._budgets.values())
