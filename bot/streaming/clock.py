"""Time as the streaming editor sees it: a monotonic clock and a sleep, injectable for tests.

`LoopClock` reads the running event loop's clock. `VirtualClock` runs an event loop whose time
only moves when every task is waiting, jumping straight to the next timer: tests and the
benchmark replay minutes of rate-limited streaming in milliseconds, deterministically.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

# How long the virtual loop waits for real I/O before deciding that nothing can ever wake it.
DEADLOCK_GRACE = 5.0


class Clock(Protocol):
    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class LoopClock:
    """The running loop's clock (monotonic), and asyncio's sleep."""

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class _JumpingSelector(selectors.DefaultSelector):
    """Never blocks for a timer: when no I/O is ready, time jumps to the loop's next deadline."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if events:
            return events
        if timeout is None:
            # Nothing scheduled: only real I/O (another thread) could wake the loop.
            events = super().select(DEADLOCK_GRACE)
            if not events:
                raise RuntimeError("virtual clock: every task waits and no timer is set")
            return events
        self._clock.now += max(0.0, timeout)
        return []


class _VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(_JumpingSelector(clock))
        self._virtual = clock

    def time(self) -> float:
        return self._virtual.now


class VirtualClock:
    """A clock whose time passes only while all tasks wait; `run` drives a coroutine on it."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        """Run `main` to completion on a fresh loop in virtual time."""
        loop = _VirtualLoop(self)
        try:
            return loop.run_until_complete(main)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
