"""How the streaming editor rides out a platform outage: which failed writes are worth another
try, and how long each answer waits before it.

A 429 is the budget's business (`Budget.pause`). A `PlatformUnavailable` (HTTP 5xx, a timeout, a
dropped connection) is an outage: the same write may land a moment later, so the answer's next
try waits a backoff that doubles from `FIRST_BACKOFF` up to `MAX_BACKOFF`, with jitter so that
the answers one outage hit do not all come back at the same instant. Every try still waits for
its turn in the budget, so retries never exceed the platform's rate. The writes that end an
answer keep trying for `RETRY_WINDOW` seconds from their first failure (the editor then posts
the end as a new message); interim writes keep trying, each with the newest text, for as long
as the answer is being written. Any other `PlatformError` (msg_too_long, channel_not_found,
invalid_auth…) is a refusal that trying again would not change. An exception from outside the
error tree is an adapter's bug (logged) and is retried like an outage: it is most often a
network failure the adapter did not map.
"""

from __future__ import annotations

import random

from bot.errors import PlatformError, PlatformUnavailable
from bot.streaming.clock import Clock

# Seconds the end of an answer keeps being retried through an outage before it is posted anew.
RETRY_WINDOW = 30.0
FIRST_BACKOFF = 0.5  # seconds before the first retry of a streak
MAX_BACKOFF = 5.0  # the wait stops doubling here, so a platform that is back is seen soon
BACKOFF_FACTOR = 2.0


def transient(error: Exception) -> bool:
    """Whether a failed call (other than a 429) may land if tried again later."""
    return isinstance(error, PlatformUnavailable) or not isinstance(error, PlatformError)


class Backoff:
    """One answer's streak of transient failures: how long to wait before the next try, and
    whether the answer's end has been tried for the whole window. A write that lands ends the
    streak."""

    def __init__(
        self, clock: Clock, window: float = RETRY_WINDOW, rng: random.Random | None = None
    ) -> None:
        self._clock = clock
        self.window = window
        self._rng = rng or random.Random()
        self._failures = 0  # in the current streak
        self._ending_since: float | None = None  # first failure of a write ending the answer

    def failed(self, *, ending: bool) -> float | None:
        """A try failed transiently: the seconds to wait before the next one, or None when it
        ends the answer (`ending`) and such writes have failed for `window` seconds already."""
        now = self._clock.monotonic()
        if ending:
            # Interim failures before the end don't shorten the end's own window.
            if self._ending_since is None:
                self._ending_since = now
            elif now - self._ending_since >= self.window:
                return None
        step = min(MAX_BACKOFF, FIRST_BACKOFF * BACKOFF_FACTOR**self._failures)
        self._failures += 1
        # "Equal jitter": never under half the step, so a window is not spent in a burst.
        return step / 2 + self._rng.uniform(0.0, step / 2)

    def landed(self) -> None:
        """A write landed: the platform answers again."""
        self._failures = 0
        self._ending_since = None

    def new_window(self) -> None:
        """The end goes another way now (a new message instead of an edit): it gets a window of
        its own; the wait keeps growing, as the platform has not answered yet."""
        self._ending_since = None
