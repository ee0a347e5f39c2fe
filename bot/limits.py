"""How many questions a person, and a whole workspace, may ask per minute: the one check the core
makes before a question reaches retrieval or the model (QUESTIONS_PER_MINUTE_PER_USER and
QUESTIONS_PER_MINUTE_PER_WORKSPACE, 0 for no limit).

`Counter` is the seam: `InProcessCounter` keeps sliding windows in this process, and a
Redis-backed counter can replace it so that replicas share the limits (issue 14). A refused
question gets `Refusal.message` in its thread instead of an answer.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from bot.settings import Settings

WINDOW_SECONDS = 60.0  # the limits are per minute
# Idle windows are dropped at most this often, so a sweep costs nothing per question.
SWEEP_INTERVAL = WINDOW_SECONDS


@dataclass(frozen=True)
class Limit:
    """At most `per_window` questions counted under `key` in any WINDOW_SECONDS."""

    key: str
    per_window: int
    who: Literal["user", "workspace"]


@dataclass(frozen=True)
class Refusal:
    """Which limit a question ran into, and when a question will be taken again."""

    limit: Limit
    retry_after: float  # seconds

    @property
    def message(self) -> str:
        wait = max(1, math.ceil(self.retry_after))
        if self.limit.who == "user":
            return (
                f"Slow down: you can ask {self.limit.per_window} questions a minute here; "
                f"try again in {wait} s."
            )
        return (
            f"Slow down: this workspace can ask {self.limit.per_window} questions a minute; "
            f"try again in {wait} s."
        )


class Counter(Protocol):
    """Counts questions in sliding windows; the contract every implementation keeps."""

    async def take(self, limits: Sequence[Limit]) -> Refusal | None:
        """Count one question under every limit, or under none if any is full (then the first
        full one, with how long until it has room)."""
        ...


class InProcessCounter:
    """Sliding windows in memory: the times of each key's recent questions. A key holds at most
    its limit's stamps, and keys idle for a whole window are dropped, so memory follows the
    people asking now, not everyone who ever asked."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, window: float = WINDOW_SECONDS
    ) -> None:
        self._clock = clock
        self._window = window
        self._stamps: dict[str, deque[float]] = {}
        self._swept = clock()

    def __len__(self) -> int:
        """How many keys are held (for the eviction's tests)."""
        return len(self._stamps)

    async def take(self, limits: Sequence[Limit]) -> Refusal | None:
        now = self._clock()
        self._sweep(now)
        # No await from here on: checking and counting are one step for concurrent questions.
        for limit in limits:
            stamps = self._recent(limit.key, now)
            if len(stamps) >= limit.per_window:
                return Refusal(limit, stamps[-limit.per_window] + self._window - now)
        for limit in limits:
            self._stamps.setdefault(limit.key, deque()).append(now)
        return None

    def _recent(self, key: str, now: float) -> deque[float]:
        stamps = self._stamps.get(key, deque())
        while stamps and stamps[0] <= now - self._window:
            stamps.popleft()
        return stamps

    def _sweep(self, now: float) -> None:
        if now - self._swept < SWEEP_INTERVAL:
            return
        self._swept = now
        idle = [key for key, stamps in self._stamps.items() if stamps[-1] <= now - self._window]
        for key in idle:
            del self._stamps[key]


class QuestionLimits:
    """The limits Settings set, applied to one question of `user` in `workspace`."""

    def __init__(self, settings: Settings, counter: Counter | None = None) -> None:
        self._per_user = settings.questions_per_minute_per_user
        self._per_workspace = settings.questions_per_minute_per_workspace
        self._counter: Counter = counter if counter is not None else InProcessCounter()

    async def admit(self, workspace: str, user: str | None) -> Refusal | None:
        """None: the question is counted and may be answered; else why it may not."""
        limits: list[Limit] = []
        # The person's own limit first: the one to name when both are full.
        if self._per_user and user is not None:
            limits.append(Limit(f"user:{workspace}:{user}", self._per_user, "user"))
        if self._per_workspace:
            limits.append(Limit(f"workspace:{workspace}", self._per_workspace, "workspace"))
        return await self._counter.take(limits) if limits else None
