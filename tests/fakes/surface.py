"""Fakes for the streaming editor's tests: a surface that records every call with its clock time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from adapters.slack.mrkdwn import to_mrkdwn
from bot.citations import Source, sources_markdown
from bot.streaming.clock import Clock
from bot.surface import BudgetSpec, Final

DISCORD_CHANNEL = BudgetSpec("discord:1:2", 5, 5.0)


@dataclass
class Call:
    kind: str  # "post" or "edit"
    message_id: str
    text: str
    final: Final | None
    at: float  # clock time the call started
    budget: str


@dataclass
class FakeSurface:
    """Records posts and edits; `refuse` may return an error to raise for a call instead."""

    clock: Clock
    edit_budget: BudgetSpec = DISCORD_CHANNEL
    post_budget: BudgetSpec = DISCORD_CHANNEL
    max_size: int = 2000
    latency: float = 0.05
    slack: bool = False
    shows_waiting: bool = False
    refuse: Callable[[Call], Exception | None] | None = None
    calls: list[Call] = field(default_factory=list)
    refused: list[Call] = field(default_factory=list)
    shown: dict[str, str] = field(default_factory=dict)
    finals: dict[str, Final | None] = field(default_factory=dict)
    in_flight: int = 0
    most_in_flight: int = 0

    def measure(self, text: str) -> int:
        return len(text.encode()) if self.slack else len(text)

    def render(self, markdown: str) -> str:
        return to_mrkdwn(markdown) if self.slack else markdown

    def footer(self, sources: Sequence[Source]) -> str:
        return sources_markdown(sources)

    async def post(self, text: str, *, final: Final | None = None) -> str:
        call = Call(
            "post",
            f"m{len(self.shown) + len(self.refused)}",
            text,
            final,
            self.clock.monotonic(),
            self.post_budget.key,
        )
        await self._platform(call)
        self.shown[call.message_id] = text
        self.finals[call.message_id] = final
        return call.message_id

    async def edit(self, message_id: str, text: str, *, final: Final | None = None) -> None:
        assert message_id in self.shown, "edit of a message never posted"
        call = Call("edit", message_id, text, final, self.clock.monotonic(), self.edit_budget.key)
        await self._platform(call)
        self.shown[message_id] = text
        self.finals[message_id] = final

    async def _platform(self, call: Call) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.latency)
            error = self.refuse(call) if self.refuse else None
            if error is not None:
                self.refused.append(call)
                raise error
            self.calls.append(call)
        finally:
            self.in_flight -= 1

    @property
    def messages(self) -> list[str]:
        """What each message of the answer shows now, in order."""
        return [self.shown[k] for k in sorted(self.shown, key=lambda k: int(k[1:]))]
