"""The web chat's rate budgets over many page loads: each page's socket names two budgets of its
own, and the streaming editor's registry must let them go once they are idle (issue 13, item 13).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.streaming.clock import LoopClock
from bot.streaming.editor import Editor
from bot.surface import Final, Surface
from tests.web.conftest import FakeConversations, FakeCore, frames_until_final, origin

PAGE_LOADS = 60


class SkippingClock(LoopClock):
    """The loop's clock plus time the test skips, so a page's budget window passes at once."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def monotonic(self) -> float:
        return super().monotonic() + self.skipped


@dataclass
class EditorConversations(FakeConversations):
    """Streams through the real editor, so the answer spends the surface's real budgets."""

    editor: Editor = field(default_factory=lambda: Editor(SkippingClock()))

    async def reply(
        self,
        *,
        surface: Surface,
        thread_key: str,
        workspace: str,
        question: str,
        author: str | None = None,
        event_id: str | None = None,
    ) -> int:
        stream = self.editor.stream(surface)
        await stream.start()
        for delta in self.deltas:
            stream.push(delta)
        answer_id = await self.store.record_exchange(
            thread_key=thread_key,
            workspace=workspace,
            question=question,
            answer=stream.text,
            sources=self.sources,
            status="done",
            author=author,
        )
        await stream.finish("", Final(answer_id, tuple(self.sources)))
        return answer_id


@pytest.fixture
def core(core: FakeCore) -> FakeCore:
    core.conversations = EditorConversations(core.store)
    return core


async def test_page_loads_do_not_grow_the_budget_registry(
    client: TestClient[Any, Any], core: FakeCore
) -> None:
    conversations = core.conversations
    assert isinstance(conversations, EditorConversations)
    clock = conversations.editor.clock
    assert isinstance(clock, SkippingClock)
    for _ in range(PAGE_LOADS):
        assert (await client.get("/")).status == 200
        async with client.ws_connect("/ws", headers={"Origin": origin(client)}) as ws:
            await ws.send_json({"type": "ask", "conversation": "c1", "text": "How?"})
            frames = await frames_until_final(ws)
        assert frames[-1]["final"] is True  # every page got its whole answer
        clock.skipped += 2.0  # the page stays open a while: its budgets' window passes
    # Before: two budgets per page load, kept for ever (120 here).
    assert len(conversations.editor.budgets.all()) < PAGE_LOADS // 2
