"""The streaming editor: text deltas in, messages that grow in place out, on every platform.

`Editor` is one per process and owns the shared rate budgets; `editor.stream(surface)` gives one
`AnswerStream` per answer. Each stream runs a single task that, whenever the text has changed,
asks the right budget for a call, and only when the call is granted lays out what the messages
should now show: everything that arrived while it waited goes into that one write, and nothing is
written when nothing changed. The first post and the first visible text and the final writes
outrank interim edits in every budget, so a saturated budget shows fewer intermediate states but
serves every answer's start and end first, and drops none. Adapters supply only
`bot.surface.Surface`.

Tasks: one per answer, never one per edit. The answer's task keeps its writes in order (an
answer's messages are never written twice at once, and its last write carries `Final`); each
busy budget adds one dispatcher that decides whose call goes next (see `bot.streaming.budget`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from enum import Enum

from bot.errors import PlatformError, PlatformRateLimited
from bot.streaming.budget import Budget, Budgets, Priority, Rank
from bot.streaming.clock import Clock, LoopClock
from bot.streaming.splitting import Part, close_open, next_prefix, split
from bot.streaming.timings import Timings
from bot.surface import Final, Surface

log = logging.getLogger(__name__)

PLACEHOLDER = "_Thinking…_"
MARKER = "⏳"  # shown at the end of an answer still being written
WARNING_SIGN = "⚠️"
CANCELLED_NOTE = "_Cancelled._"
EMPTY_ANSWER = "_No answer._"
SECTION_BREAK = "\n\n"
# Refusals other than 429 are retried this many times per write, backing off from RETRY_BACKOFF
# seconds (doubling), then that write is given up and logged.
MAX_ATTEMPTS = 3
RETRY_BACKOFF = 1.0
# 429s honoured per write before giving it up: a platform that never stops refusing must not
# keep a finished answer waiting forever.
MAX_RATE_LIMITED = 10
# Writes given up before the stream stops writing at all (the channel is gone, the token revoked).
MAX_GIVE_UPS = 3
RENDER_CACHE = 64  # rendered texts kept per answer
CLOSE_GRACE = 10.0  # seconds `Editor.close` waits for answers' end states at shutdown


class Ending(Enum):
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


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

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or LoopClock()
        self.budgets = Budgets(self.clock)
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
        self._frozen: list[Part] = []  # parts whose messages will not change until the end
        self._frozen_rendered: list[str] = []
        self._frozen_length = 0
        self._messages: list[_Message] = []
        self._ending: tuple[Ending, str, Final] | None = None
        self._final_delivered = False
        self._dead = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._urgent_since = 0.0
        self._last_visible = 0.0
        self._text_shown = False
        self._owing = False  # counted among the edit budget's owed finals
        # Layout runs before and after each wait for the budget, and fitting renders too:
        # rendering (Slack: a markdown parse) is the editor's main cost, so it is memoized.
        self._rendered: dict[tuple[str, bool], str] = {}
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
        return [m.id for m in self._messages]

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
        if self.timings.first_delta is None:
            self.timings.first_delta = now
            self._urgent_since = now
        self._chunks.append(delta)
        self._wake.set()

    async def finish(self, footer_markdown: str, final: Final) -> None:
        """Done: marker removed, `footer_markdown` appended; returns once delivered."""
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
        refusals = rate_limited = 0
        while True:
            retry_in = 0.0
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
                    return
                except PlatformRateLimited as error:
                    budget.pause(error.retry_after)
                    rate_limited += 1
                    if rate_limited > MAX_RATE_LIMITED:
                        self._give_up(write, error)
                        return
                except Exception as error:
                    # Adapters raise PlatformError; anything else is their bug, treated alike
                    # so the answer still ends visibly.
                    if not isinstance(error, PlatformError):
                        log.exception("surface call failed unexpectedly")
                    refusals += 1
                    if refusals >= MAX_ATTEMPTS:
                        self._give_up(write, error)
                        return
                    retry_in = RETRY_BACKOFF * 2 ** (refusals - 1)
            if retry_in:
                await self._clock.sleep(retry_in)

    async def _call(self, write: _Write) -> None:
        surface = self._surface
        if write.index >= len(self._messages):
            message_id = await surface.post(write.text, final=write.final)
            self._messages.append(_Message(message_id, write.text))
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
            self._final_delivered = True
            self.timings.final = now

    def _give_up(self, write: _Write, error: Exception) -> None:
        detail = error.detail if isinstance(error, PlatformError) else type(error).__name__
        log.warning("giving up a write to message %d of an answer: %s", write.index, detail)
        self.timings.given_up += 1
        self.timings.refused.append(detail)
        if write.index < len(self._messages):
            self._messages[write.index].shown = write.text  # don't retry this content
        if write.final is not None:
            self._final_delivered = True
        if self.timings.given_up >= MAX_GIVE_UPS:
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
        desired, shows_text = self._layout()
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

    def _layout(self) -> tuple[list[str], bool]:
        document, interim = self._document()
        if not document:
            if self._surface.shows_waiting and self._ending is None:
                return [], False  # the platform shows the wait; post when there is text
            return [self._surface.render(PLACEHOLDER)], False
        tail = document[self._frozen_length :]
        prefix = next_prefix(self._frozen[-1]) if self._frozen else ""
        parts = split(tail, self._fits, prefix, self._fits_interim if interim else self._fits)
        if interim:
            # The text only grows, so a full message never changes again until the end.
            for part in parts[:-1]:
                self._frozen.append(part)
                self._frozen_rendered.append(self._show(part, marker=False))
                self._frozen_length += len(part.body)
            parts = parts[-1:]
        shown = [
            self._show(part, marker=interim and i == len(parts) - 1) for i, part in enumerate(parts)
        ]
        # A part of nothing but whitespace (the text's trailing blank lines) is not posted.
        shown = [text for text in shown if text.strip()]
        if not shown and not self._frozen_rendered:
            shown = [self._surface.render(EMPTY_ANSWER)]
        return self._frozen_rendered + shown, True

    def _document(self) -> tuple[str, bool]:
        """The markdown to show, and whether it is still being written."""
        text = self.text
        if self._ending is None:
            return text, True
        ending, extra, _ = self._ending
        if ending is Ending.DONE:
            note = extra.strip()
            if not text and not note:
                return EMPTY_ANSWER, False
        elif ending is Ending.FAILED:
            note = f"{WARNING_SIGN} {extra.strip()}"
        else:
            note = CANCELLED_NOTE
        if not note:
            return text, False
        if not text.strip():
            return note, False
        # Trailing whitespace goes, but never from text a full message already shows.
        kept = text[: self._frozen_length] + text[self._frozen_length :].rstrip()
        return kept + SECTION_BREAK + note, False

    def _show(self, part: Part, *, marker: bool) -> str:
        key = (part.text, marker)
        shown = self._rendered.get(key)
        if shown is None:
            if len(self._rendered) >= RENDER_CACHE:
                self._rendered.clear()
            shown = self._rendered[key] = self._render(part, marker=marker)
        return shown

    def _render(self, part: Part, *, marker: bool) -> str:
        # Trailing blank lines show nothing, and an edit that only adds them would be wasted.
        markdown = close_open(part.text).rstrip()
        if marker:
            last_line = markdown.rsplit("\n", 1)[-1]
            # A closing fence must stand alone on its line.
            gap = "\n" if last_line.lstrip().startswith(("```", "~~~")) else " "
            markdown = f"{markdown}{gap}{MARKER}" if markdown else MARKER
        return self._surface.render(markdown)

    def _fits(self, part: Part) -> bool:
        surface = self._surface
        return surface.measure(self._show(part, marker=False)) <= surface.max_size

    def _fits_interim(self, part: Part) -> bool:
        surface = self._surface
        return surface.measure(self._show(part, marker=True)) <= surface.max_size
