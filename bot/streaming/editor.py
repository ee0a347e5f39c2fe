"""The streaming editor: text deltas in, messages that grow in place out, on every platform.

`Editor` is one per process and owns the shared rate budgets; `editor.stream(surface)` gives one
`AnswerStream` per answer. Each stream runs a single task that, whenever the text has changed,
asks the right budget for a call, and only when the call is granted lays out what the messages
should now show: everything that arrived while it waited goes into that one write, and nothing is
written when nothing changed. The first post and the first visible text and the final writes
outrank interim edits in every budget, so a saturated budget shows fewer intermediate states but
serves every answer's start and end first, and drops none. Adapters supply only
`bot.surface.Surface`.

Through a platform outage (`bot.streaming.retry`) an answer keeps trying with backoff, within
its budgets; if the message that should show the answer's end still can't be edited after the
retry window, the end is posted as a new message under it, and `delivered` says whether the
end state landed at all.

Tasks: one per answer, never one per edit. The answer's task keeps its writes in order (an
answer's messages are never written twice at once, and its last write carries `Final`); each
busy budget adds one dispatcher that decides whose call goes next (see `bot.streaming.budget`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from bot.errors import PlatformError, PlatformRateLimited
from bot.streaming.budget import Budget, Budgets, Priority, Rank
from bot.streaming.clock import Clock, LoopClock
from bot.streaming.layout import (
    CANCELLED_NOTE,
    EMPTY_ANSWER,
    MARKER,
    PLACEHOLDER,
    WARNING_SIGN,
    Ending,
    Layout,
)
from bot.streaming.retry import RETRY_WINDOW, Backoff, transient
from bot.streaming.timings import Timings
from bot.surface import Final, Surface

__all__ = [
    "CANCELLED_NOTE",
    "EMPTY_ANSWER",
    "MARKER",
    "PLACEHOLDER",
    "WARNING_SIGN",
    "AnswerStream",
    "Editor",
    "Ending",
]

log = logging.getLogger(__name__)

# 429s honoured per write before giving it up: a platform that never stops refusing must not
# keep a finished answer waiting forever.
MAX_RATE_LIMITED = 10
# Writes given up before the stream stops writing at all (the channel is gone, the token revoked).
# Refusals are not retried; outages are (see bot.streaming.retry).
MAX_GIVE_UPS = 3
CLOSE_GRACE = 10.0  # seconds `Editor.close` waits for answers' end states at shutdown


@dataclass
class _Message:
    id: str
    shown: str  # the rendered text the platform last accepted


@dataclass(frozen=True)
class _Write:
    index: int  # which message of the answer; == number posted means a new post
    text: str  # rendered
    final: Final | None
    shows_text: bool  # carries some of the answer, not just the placeholder


class Editor:
    """One per process: owns the budgets registry every answer's stream draws on."""

    def __init__(self, clock: Clock | None = None, *, retry_window: float = RETRY_WINDOW) -> None:
        self.clock: Clock = clock or LoopClock()
        self.budgets = Budgets(self.clock)
        self.retry_window = retry_window  # see bot.streaming.retry
        self._streams: set[AnswerStream] = set()  # those whose task runs

    def stream(self, surface: Surface) -> AnswerStream:
        return AnswerStream(self, surface)

    async def close(self, grace: float = CLOSE_GRACE) -> None:
        """At shutdown: end every answer still streaming as cancelled, give the end states
        `grace` seconds to land, then stop whatever still runs."""
        for stream in list(self._streams):
            stream._request_end(Ending.CANCELLED, "", Final(None))
        pending = {task for stream in self._streams if (task := stream._task) is not None}
        if pending:
            _, pending = await asyncio.wait(pending, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _spawn(self, stream: AnswerStream, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(stream._run(), name=name)
        self._streams.add(stream)
        task.add_done_callback(lambda _: self._streams.discard(stream))
        return task


class AnswerStream:
    """One answer being written into one surface; `push` deltas, then finish, fail or cancel."""

    def __init__(self, editor: Editor, surface: Surface) -> None:
        self._editor = editor
        self._surface = surface
        self._clock = editor.clock
        self._edit_budget: Budget = editor.budgets.get(surface.edit_budget)
        self._post_budget: Budget = editor.budgets.get(surface.post_budget)
        self._chunks: list[str] = []
        self._messages: list[_Message] = []  # the messages the layout writes into
        self._posted: list[str] = []  # every message id, those left behind by an outage too
        self._ending: tuple[Ending, str, Final] | None = None
        self._final_delivered = False  # the final write landed or was given up
        self._final_landed = False
        self._dead = False
        self._backoff = Backoff(self._clock, editor.retry_window)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._urgent_since = 0.0
        self._last_visible = 0.0
        self._text_shown = False
        self._owing = False  # counted among the edit budget's owed finals
        self._layout = Layout(surface)
        self.timings = Timings()

    # The API the conversation calls.

    @property
    def text(self) -> str:
        """The answer's markdown so far (without footer or end notes)."""
        if len(self._chunks) > 1:
            self._chunks = ["".join(self._chunks)]
        return self._chunks[0] if self._chunks else ""

    @property
    def messages(self) -> list[str]:
        """Ids of the messages posted so far, in order."""
        return list(self._posted)

    @property
    def delivered(self) -> bool:
        """Whether the answer's end state landed: once `finish`, `fail` or `cancel` returns,
        False means the platform never took it and people see less than the answer."""
        return self._final_landed

    async def start(self) -> None:
        """Queue the placeholder at the top priority of the post budget and return at once.

        It does not wait for the post to land: retrieval and the model call start meanwhile, and
        if text arrives before the post's turn comes, that text is posted instead.
        """
        self._ensure_task()
        await asyncio.sleep(0)  # let the stream's task queue its post

    def push(self, delta: str) -> None:
        """Append markdown; never blocks. The stream's task shows it at the budget's pace."""
        if not delta:
            return
        if self._ending is not None:
            log.warning("text pushed after the answer ended; ignored")
            return
        now = self._clock.monotonic()
        first = self.timings.first_delta is None
        if first:
            self.timings.first_delta = now
            self._urgent_since = now
        self._chunks.append(delta)
        self._wake.set()
        if first:
            # A queued placeholder (or interim edit) is now the answer's first text, which
            # outranks it: a placeholder waiting for the pacing's next token must not keep the
            # first words back until then (three DMs at once on Slack's 20-a-minute stream
            # starts waited 3 s so, or the whole answer).
            self._edit_budget.reconsider()
            self._post_budget.reconsider()

    async def finish(self, footer_markdown: str, final: Final) -> None:
        """Done: marker removed, `footer_markdown` appended; returns once delivered or given
        up (`delivered` says which)."""
        await self._end(Ending.DONE, footer_markdown, final)

    async def fail(self, warning: str) -> None:
        """Failed: the partial text stays, with a short warning under it."""
        await self._end(Ending.FAILED, warning, Final(None))

    async def cancel(self) -> None:
        """Cancelled: the partial text stays, with a note under it."""
        await self._end(Ending.CANCELLED, "", Final(None))

    # The stream's task.

    def _ensure_task(self) -> None:
        if self._task is None:
            self.timings.started = self._clock.monotonic()
            self._owing = True
            self._edit_budget.owe()
            self._task = self._editor._spawn(self, "answer stream")

    async def _end(self, ending: Ending, extra: str, final: Final) -> None:
        self._request_end(ending, extra, final)
        assert self._task is not None
        # Shielded: a caller cancelled while waiting must not leave the message "thinking".
        await asyncio.shield(self._task)

    def _request_end(self, ending: Ending, extra: str, final: Final) -> None:
        if self._ending is None:
            now = self.timings.ended = self._clock.monotonic()
            if self._text_shown or not self._chunks:
                # An answer still waiting for its first text keeps its place in the queue.
                self._urgent_since = now
            self._ending = (ending, extra, final)
            self._wake.set()
            # A queued interim edit of this answer is now its final write, which outranks it.
            self._edit_budget.reconsider()
            self._post_budget.reconsider()
        self._ensure_task()
        assert self._task is not None
        if self._task.done() and not self._dead:
            # The task died of a bug mid-answer (logged): one more go at the end state.
            self._task = self._editor._spawn(self, "answer stream end")

    async def _run(self) -> None:
        try:
            while not self._dead:
                write = self._next_write()
                if write is None:
                    if self._ending is not None:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await self._deliver(write.index >= len(self._messages))
        except Exception:
            # A bug here must not take the conversation down with it; the answer is stored.
            log.exception("answer stream failed; its messages may be incomplete")
        finally:
            if self._owing and (self._ending is not None or self._dead):
                self._owing = False
                self._edit_budget.settle()

    async def _deliver(self, posting: bool) -> None:
        budget = self._post_budget if posting else self._edit_budget
        rate_limited = 0
        while True:
            retry_in: float | None = 0.0
            async with budget.slot(self._rank) as grant:
                # Laid out only now, so this one call carries everything that arrived meanwhile.
                write = self._next_write()
                if write is None or (write.index >= len(self._messages)) != posting:
                    # Nothing to do on this budget after all (the loop looks again); an unused
                    # grant must not hold a place in the platform's window.
                    grant.not_made()
                    return
                try:
                    await self._call(write)
                    self._backoff.landed()
                    return
                except PlatformRateLimited as error:
                    budget.pause(error.retry_after)
                    rate_limited += 1
                    if rate_limited > MAX_RATE_LIMITED:
                        self._cannot_land(write, error)
                        return
                except Exception as error:
                    if not isinstance(error, PlatformError):
                        # An adapter's bug; retried, as it is most often an unmapped outage.
                        log.exception("surface call failed unexpectedly")
                    retry_in = (
                        self._backoff.failed(ending=self._ending is not None)
                        if transient(error)
                        else None
                    )
                    if retry_in is None:
                        self._cannot_land(write, error)
                        return
                    self.timings.retried += 1
                    log.info("%s; trying again in %.1fs", _detail(error), retry_in)
            if retry_in:
                await self._clock.sleep(retry_in)

    async def _call(self, write: _Write) -> None:
        surface = self._surface
        if write.index >= len(self._messages):
            message_id = await surface.post(write.text, final=write.final)
            self._messages.append(_Message(message_id, write.text))
            self._posted.append(message_id)
            if self.timings.first_post is None:
                self.timings.first_post = self._clock.monotonic()
        else:
            message = self._messages[write.index]
            await surface.edit(message.id, write.text, final=write.final)
            message.shown = write.text
        now = self._last_visible = self._clock.monotonic()
        self.timings.writes += 1
        if write.shows_text and not self._text_shown:
            self._text_shown = True
            self.timings.first_text = now
        if write.final is not None:
            self._final_delivered = self._final_landed = True
            self.timings.final = now

    def _cannot_land(self, write: _Write, error: Exception) -> None:
        if self._ending is not None and write.index < len(self._messages):
            # The end can't be written into this message: it and any after it stay as they
            # are, and what they should show is posted below them (in the same thread).
            log.warning(
                "message %d of an answer can't be edited to its end state (%s); posting the "
                "end as a new message",
                write.index,
                _detail(error),
            )
            self.timings.reposted += 1
            del self._messages[write.index :]
            self._backoff.new_window()
            return
        self._give_up(write, error)

    def _give_up(self, write: _Write, error: Exception) -> None:
        detail = _detail(error)
        log.warning("giving up a write to message %d of an answer: %s", write.index, detail)
        self.timings.given_up += 1
        self.timings.refused.append(detail)
        if write.index < len(self._messages):
            self._messages[write.index].shown = write.text  # don't retry this content
        if self._ending is not None:
            # Even a new message can't show the end: nothing more to try.
            log.error("the end of an answer could not be shown: %s", detail)
            self._final_delivered = self._dead = True
        elif self.timings.given_up >= MAX_GIVE_UPS:
            log.error("the platform keeps refusing this answer's writes; stopping its stream")
            self._dead = True

    def _rank(self) -> Rank:
        if not self._messages and not self._chunks:
            return (Priority.PLACEHOLDER, self.timings.started or 0.0)
        # A first post that carries text is the answer's first visible text: urgent, not paced.
        if self._ending is not None or (not self._text_shown and self._chunks):
            return (Priority.URGENT, self._urgent_since)
        return (Priority.INTERIM, self._last_visible)

    # Layout: what each message should show now.

    def _next_write(self) -> _Write | None:
        ending = self._ending[:2] if self._ending is not None else None
        desired, shows_text = self._layout.desired(self.text, ending)
        if not desired:
            return None
        last = len(desired) - 1
        final = self._ending[2] if self._ending is not None else None
        for index, text in enumerate(desired):
            if index >= len(self._messages) or self._messages[index].shown != text:
                return _Write(index, text, final if index == last else None, shows_text)
        if final is not None and not self._final_delivered:
            return _Write(last, desired[last], final, shows_text)
        return None


def _detail(error: Exception) -> str:
    return error.detail if isinstance(error, PlatformError) else type(error).__name__
