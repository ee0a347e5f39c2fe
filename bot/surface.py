"""The contract between the streaming editor and a platform: the few calls an adapter supplies.

An adapter builds one `Surface` per answer (it knows the channel, the thread, the token); the
editor in `bot/` decides when to post and edit, within the budgets the surface names. Budgets are
identified by key, so every answer naming the same key shares one budget (Slack's chat.update is
per workspace, chat.postMessage per channel; Discord's create/edit per channel).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from bot.citations import Source, sources_markdown

# How long a request may be in flight (slack_sdk's request timeout): by then it has reached the
# platform or failed.
REQUEST_TIMEOUT = 30.0


@dataclass(frozen=True)
class BudgetSpec:
    """At most `rate` calls per `window` seconds, shared by every answer using `key`.

    A call counts from when its response came back, since the platform counts it when it
    arrives, which may be any time until then: a busy event loop can send a call well after its
    grant. `arrival_bound` caps that: a call counts from its grant plus the bound at the latest.
    Only a client library that holds responses back needs it short (discord.py sleeps out an
    exhausted bucket before it returns a response the platform counted long before)."""

    key: str
    rate: int
    window: float
    arrival_bound: float = REQUEST_TIMEOUT


@dataclass(frozen=True)
class Final:
    """Passed with the last write of a finished answer.

    `answer_id` is the stored answer's id (adapters attach 👍/👎 buttons carrying it); it is None
    when the answer failed or was cancelled, so no feedback buttons appear then. `sources` are
    the ones the answer cites, as data: a surface that shows them its own way takes them here.
    """

    answer_id: int | None
    sources: tuple[Source, ...] = ()


class Surface(Protocol):
    """Where one answer is shown. Calls raise `bot.errors.PlatformRateLimited` on a 429 and
    `bot.errors.PlatformError` on any other refusal; the editor handles both."""

    @property
    def max_size(self) -> int:
        """The largest message, in `measure` units, the platform accepts reliably."""
        ...

    @property
    def shows_waiting(self) -> bool:
        """True when the platform itself already shows that an answer is coming (a deferred
        Discord interaction's "thinking…"): the editor then spends no call on a placeholder
        and makes the first post when there is text to show."""
        ...

    @property
    def edit_budget(self) -> BudgetSpec: ...

    @property
    def post_budget(self) -> BudgetSpec: ...

    def measure(self, text: str) -> int:
        """Size of rendered text as the platform counts it (Discord: characters; Slack: bytes)."""
        ...

    def render(self, markdown: str) -> str:
        """Markdown to the platform's own format (Slack mrkdwn; Discord and web: unchanged)."""
        ...

    def footer(self, sources: Sequence[Source]) -> str:
        """The Markdown written under a finished answer for its sources; "" when the surface
        shows them apart from the text (from `Final.sources`)."""
        ...

    async def post(self, text: str, *, final: Final | None = None) -> str:
        """Post a new message of the answer; returns its id for later edits."""
        ...

    async def edit(self, message_id: str, text: str, *, final: Final | None = None) -> None:
        """Replace the text of a message this answer posted."""
        ...


@dataclass(frozen=True)
class Limits:
    """What a platform allows one answer: message size (counted in `unit`), the budgets its
    writes spend, and whether it shows by itself that an answer is coming."""

    max_size: int
    edit_budget: BudgetSpec
    post_budget: BudgetSpec
    unit: Literal["characters", "utf-8 bytes"] = "characters"
    shows_waiting: bool = False


class LimitedSurface:
    """The `Surface` properties from one `Limits` value, written once for every adapter; a
    subclass supplies `render`, `post` and `edit`."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    @property
    def max_size(self) -> int:
        return self.limits.max_size

    @property
    def shows_waiting(self) -> bool:
        return self.limits.shows_waiting

    @property
    def edit_budget(self) -> BudgetSpec:
        return self.limits.edit_budget

    @property
    def post_budget(self) -> BudgetSpec:
        return self.limits.post_budget

    def measure(self, text: str) -> int:
        return len(text.encode("utf-8")) if self.limits.unit == "utf-8 bytes" else len(text)

    def footer(self, sources: Sequence[Source]) -> str:
        return sources_markdown(sources)


class PassThroughSurface:
    """`inner` unchanged: a wrapper that changes one thing (counts writes, shows waiting)
    subclasses this and overrides only that."""

    def __init__(self, inner: Surface) -> None:
        self._inner = inner

    @property
    def max_size(self) -> int:
        return self._inner.max_size

    @property
    def shows_waiting(self) -> bool:
        return self._inner.shows_waiting

    @property
    def edit_budget(self) -> BudgetSpec:
        return self._inner.edit_budget

    @property
    def post_budget(self) -> BudgetSpec:
        return self._inner.post_budget

    def measure(self, text: str) -> int:
        return self._inner.measure(text)

    def render(self, markdown: str) -> str:
        return self._inner.render(markdown)

    def footer(self, sources: Sequence[Source]) -> str:
        return self._inner.footer(sources)

    async def post(self, text: str, *, final: Final | None = None) -> str:
        return await self._inner.post(text, final=final)

    async def edit(self, message_id: str, text: str, *, final: Final | None = None) -> None:
        await self._inner.edit(message_id, text, final=final)
