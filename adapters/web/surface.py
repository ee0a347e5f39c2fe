"""The web chat's `Surface`: the streaming editor's posts and edits become JSON frames on a socket.

The browser has no message size limit and no platform rate limit, so the budgets only keep one
socket from being flooded. A socket that closes mid-answer swallows the remaining writes: the
answer still completes and is stored, and the page finds it in the history on reload.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from adapters.web.markdown import render_answer
from bot.citations import Source
from bot.streaming.editor import MARKER
from bot.surface import BudgetSpec, Final, LimitedSurface, Limits

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 20_000  # no browser limit; the editor still splits very long answers
EDITS_PER_WINDOW = 20  # a smooth stream without re-rendering markdown hundreds of times a second
POSTS_PER_WINDOW = 20
BUDGET_WINDOW_SECONDS = 1.0
_SOCKET_TAG_BYTES = 6


class SocketChannel:
    """One browser socket: numbers its messages and sends frames while the page is there."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self._ws = ws
        self.tag = secrets.token_hex(_SOCKET_TAG_BYTES)
        self._numbers = itertools.count(1)

    def next_message_id(self) -> str:
        return f"{self.tag}-{next(self._numbers)}"

    @property
    def open(self) -> bool:
        return not self._ws.closed

    async def send(self, frame: dict[str, Any]) -> None:
        """Send if the page is still there; a gone page is not an error for the answer."""
        if self._ws.closed:
            return
        try:
            await self._ws.send_json(frame)
        except ConnectionError:
            log.debug("web chat socket closed while sending; the answer continues unseen")


class WebSurface(LimitedSurface):
    """Where one answer appears in the browser: frames tagged with the conversation they're for."""

    def __init__(self, channel: SocketChannel, conversation: str) -> None:
        self._channel = channel
        self._conversation = conversation
        super().__init__(
            Limits(
                max_size=MAX_MESSAGE_CHARS,
                edit_budget=BudgetSpec(
                    f"web:edit:{channel.tag}", EDITS_PER_WINDOW, BUDGET_WINDOW_SECONDS
                ),
                post_budget=BudgetSpec(
                    f"web:post:{channel.tag}", POSTS_PER_WINDOW, BUDGET_WINDOW_SECONDS
                ),
            )
        )

    def render(self, markdown: str) -> str:
        # The markdown goes to the page as is (web_markdown makes safe HTML of it per frame),
        # less the editor's in-progress marker: the page draws its own caret while streaming.
        return markdown.removesuffix(MARKER).rstrip() if markdown.endswith(MARKER) else markdown

    async def post(self, text: str, *, final: Final | None = None) -> str:
        message_id = self._channel.next_message_id()
        await self._channel.send(self._frame("post", message_id, text, final))
        return message_id

    async def edit(self, message_id: str, text: str, *, final: Final | None = None) -> None:
        await self._channel.send(self._frame("edit", message_id, text, final))

    def footer(self, sources: Sequence[Source]) -> str:
        return ""  # the page lists the sources under the answer, from the final frame

    def _frame(self, kind: str, message_id: str, text: str, final: Final | None) -> dict[str, Any]:
        rendered = render_answer(text, final.sources if final is not None else ())
        frame: dict[str, Any] = {
            "type": kind,
            "id": message_id,
            "conversation": self._conversation,
            "html": rendered.html,
            "sources": rendered.sources,
        }
        if final is not None:
            frame["final"] = True
            frame["answer_id"] = final.answer_id
        return frame
