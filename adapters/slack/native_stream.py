"""A Slack answer shown with Slack's native streaming: chat.startStream, chat.appendStream of each
new tail, chat.stopStream with the sources' text and the feedback element.

`NativeStreamSurface` is the editor's `Surface` for one answer in a DM or an assistant thread.
It looks exactly like the standard `SlackSurface` it wraps (same Markdown, same size rules), so
the editor lays the answer out the same way, and it falls back to that surface's
chat.postMessage/chat.update whenever streaming can't show what the editor asks for:

- a stream only grows, so an interim write appends only the part of its text no later text can
  change (up to the last whitespace, without a closing fence the layout added for display);
  a write that changes text already appended (rare: a refusal switching the Markdown form, a
  layout cut before what was streamed) stops the stream and edits the message with chat.update;
- a message the layout filled is stopped with the rest of its text when the next one starts;
- a stream older than SLACK_STREAM_ROTATE_SECONDS is stopped (an open code fence closed) and the
  message goes on in a new streamed message (the fence reopened, same language): Slack ends a
  stream after about five minutes. The size cut (SLACK_STREAM_ROTATE_CHARS, under Slack's ~11k
  per streamed message) is the layout's own split, which already closes and reopens fences;
- a stream Slack ended meanwhile (`message_not_in_streaming_state`) is finished by chat.update;
- a workspace refusing chat.startStream gets the standard path for this answer, and the refusal
  is reported (`on_refused`) so its next answers don't try.

Start and stop calls each spend their own workspace budget (`slack:{team}:chat.startStream`,
`slack:{team}:chat.stopStream`, Tier 2), appends the editor's edit budget
(`slack:{team}:chat.appendStream`, Tier 4); chat.update and chat.postMessage spend the standard
surface's budgets. The message id the editor and the journal hold is the first streamed
message's ts.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from adapters.slack.feedback import feedback_buttons, thumb_buttons
from adapters.slack.formats import Form, SlackFormats
from adapters.slack.surface import SlackSurface
from adapters.slack.web_api import call_slack
from bot.citations import Source
from bot.errors import PlatformError, PlatformRateLimited, PlatformUnavailable
from bot.settings import Settings
from bot.streaming.budget import Budget, Budgets, Priority, Rank
from bot.streaming.clock import Clock
from bot.streaming.layout import MARKER, PLACEHOLDER
from bot.streaming.splitting import open_fence
from bot.surface import BudgetSpec, Final

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# Slack's answers meaning the message no longer streams (it timed out, or the person stopped it).
NOT_STREAMING = frozenset({"message_not_in_streaming_state", "stopped_by_user"})
STREAMING_CONFLICT = "streaming_state_conflict"  # chat.update on a message still streaming
_FENCE_LINE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def error_code(error: PlatformError) -> str | None:
    """Slack's error code in a refusal (`SlackRefused.code`, else the detail's last word)."""
    code = getattr(error, "code", None)
    return code if isinstance(code, str) else error.detail.rsplit(" ", 1)[-1]


def refusal(error: Exception) -> bool:
    """A refusal for good: neither a 429 nor an outage."""
    return isinstance(error, PlatformError) and not isinstance(
        error, PlatformRateLimited | PlatformUnavailable
    )


def unmarked(text: str) -> str:
    """An interim text without the editor's "being written" marker (a stream shows its own)."""
    if text.endswith(MARKER):
        return text[: -len(MARKER)].rstrip(" \n")
    return text


def held_back(text: str) -> str:
    """The head of an interim text no later text changes: the last word may still grow (or get
    closed, or made inert), and a closing fence on the last line may be the layout's own."""
    lines = text.rsplit("\n", 1)
    if len(lines) == 2 and _FENCE_LINE.match(lines[1]):
        text = lines[0] + "\n"
    cut = max(text.rfind(" "), text.rfind("\n"), text.rfind("\t"))
    return text[: cut + 1]


def first_words(text: str) -> str:
    """The answer's first visible text when `held_back` would show nothing yet: all of it but a
    closing fence or the markup closers the layout added (the first text must not wait a word)."""
    lines = text.rsplit("\n", 1)
    if len(lines) == 2 and _FENCE_LINE.match(lines[1]):
        text = lines[0] + "\n"
    return text.rstrip("*_`~")


def fence_closer(shown: str) -> str:
    """What closes the code fence `shown` leaves open ("" when none is)."""
    opening = open_fence(shown)
    if opening is None:
        return ""
    found = _FENCE_LINE.match(opening)
    assert found is not None
    return ("" if shown.endswith("\n") else "\n") + found.group(1)


@dataclass
class _Segment:
    """One streamed Slack message of an answer's message (a rotation starts another)."""

    ts: str
    started: float
    offset: int  # where in the message's text this segment's share starts
    prefix: str = ""  # the fence reopener it started with


@dataclass
class _Message:
    segments: list[_Segment]
    sent: str = ""  # the head of the message's text the segments show
    wanted: str = ""  # the newest text the editor asked for (unmarked)
    streaming: bool = True
    standard: bool = False  # edited with chat.update from now on (its last segment)
    # A streaming call failed in a way that may have landed (an outage, a timeout): appending
    # again might double text, so the message is stopped and edited to its exact text instead.
    unsure: bool = False
    marked: str = field(default="", repr=False)  # `wanted` with its marker, for chat.update

    @property
    def last(self) -> _Segment:
        return self.segments[-1]


class NativeStreamSurface:
    """One answer streamed into one Slack thread (a DM or an assistant thread)."""

    def __init__(
        self,
        standard: SlackSurface,
        client: AsyncWebClient,
        settings: Settings,
        budgets: Budgets,
        clock: Clock,
        formats: SlackFormats,
        *,
        team: str,
        channel: str,
        thread_ts: str,
        recipient: str | None,
        on_refused: Callable[[str], None],
    ) -> None:
        self._standard = standard
        self._client = client
        self._budgets = budgets
        self._clock = clock
        self._formats = formats
        self._team = team
        self._channel = channel
        self._thread_ts = thread_ts
        self._recipient = recipient
        self._on_refused = on_refused
        self._rotate_after = settings.slack_stream_rotate_seconds
        self._max_chars = settings.slack_stream_rotate_chars
        stream = (settings.slack_stream_rate, settings.slack_stream_window)
        self._start_spec = BudgetSpec(f"slack:{team}:chat.startStream", *stream)
        self._stop_spec = BudgetSpec(f"slack:{team}:chat.stopStream", *stream)
        self._append_spec = BudgetSpec(
            f"slack:{team}:chat.appendStream", settings.slack_append_rate,
            settings.slack_append_window,
        )  # fmt: skip
        self._messages: dict[str, _Message] = {}
        self._refused = False  # chat.startStream refused: the standard path from now on

    # -- what the editor reads: the standard surface's rules, budgets of streaming ------------

    @property
    def max_size(self) -> int:
        size = self._standard.max_size
        return min(size, self._max_chars) if self._standard.markdown else size

    @property
    def shows_waiting(self) -> bool:
        return False

    @property
    def edit_budget(self) -> BudgetSpec:
        return self._append_spec

    @property
    def post_budget(self) -> BudgetSpec:
        return self._start_spec

    def measure(self, text: str) -> int:
        return self._standard.measure(text)

    def render(self, markdown: str) -> str:
        return self._standard.render(markdown)

    def footer(self, sources: Sequence[Source]) -> str:
        return self._standard.footer(sources)

    # -- the editor's calls ----------------------------------------------------------------------

    async def post(self, text: str, *, final: Final | None = None) -> str:
        try:
            await self._stop_filled()
        except PlatformError as error:
            # The new message matters more: the full one ends when Slack times its stream out.
            log.warning("could not stop a filled streamed message: %s", error.detail)
        if self._refused or final is not None:
            # A message complete at once needs no stream: one chat.postMessage shows it.
            return await self._standard_post(text, final)
        body = unmarked(text)
        head = "" if text == self.render(PLACEHOLDER) else held_back(body) or first_words(body)
        try:
            ts = await self._start(head)
        except PlatformError as error:
            if not refusal(error):
                raise
            log.warning(
                "Slack refused chat.startStream in %s (%s): answering with chat.update there",
                self._team,
                error.detail,
            )
            self._refused = True
            self._on_refused(self._team)
            return await self._standard_post(text, final)
        self._messages[ts] = _Message(
            [_Segment(ts, self._clock.monotonic(), 0)], sent=head, wanted=body, marked=text
        )
        return ts

    async def edit(self, message_id: str, text: str, *, final: Final | None = None) -> None:
        message = self._messages.get(message_id)
        if message is None:  # posted the standard way
            await self._standard_edit(message_id, text, final)
            return
        message.wanted, message.marked = unmarked(text), text
        if message.standard:
            await self._update(message, final)
            return
        if message.unsure:
            await self._rewrite(message, final)
            return
        head = message.wanted if final is not None else held_back(message.wanted)
        if not head and not message.sent:
            head = first_words(message.wanted)
        if not head.startswith(message.sent):
            await self._rewrite(message, final)
            return
        if final is None and len(head) == len(message.sent):
            return  # nothing new that will stay
        try:
            if self._clock.monotonic() - message.last.started >= self._rotate_after:
                await self._rotate(message)
            if final is None:
                await self._append(message, head[len(message.sent) :])
                message.sent = head
            else:
                await self._stop(message, head[len(message.sent) :], final)
                message.sent = head
        except PlatformError as error:
            if isinstance(error, PlatformUnavailable) and not isinstance(error, _Paused):
                message.unsure = True  # the editor tries the write again: see `_Message`
            if not (refusal(error) and error_code(error) in NOT_STREAMING):
                raise
            # Slack ended the stream (it timed out, or the person stopped it): what it shows
            # is kept, and the message is finished by chat.update.
            log.info("a streamed answer stopped streaming (%s); editing it", error.detail)
            message.streaming = False
            await self._rewrite(message, final)

    # -- streaming calls ---------------------------------------------------------------------------

    async def _start(self, head: str) -> str:
        args: dict[str, Any] = {"channel": self._channel, "thread_ts": self._thread_ts}
        if head:
            args["markdown_text"] = head
        if not self._channel.startswith("D") and self._recipient is not None:
            # Required outside DMs: whom the stream is for.
            args["recipient_user_id"] = self._recipient
            args["recipient_team_id"] = self._team
        response = await self._call("chat.startStream", self._client.chat_startStream(**args))
        return str(response["ts"])

    async def _append(self, message: _Message, tail: str) -> None:
        await self._call(
            "chat.appendStream",
            self._client.chat_appendStream(
                channel=self._channel, ts=message.last.ts, markdown_text=tail
            ),
        )

    async def _stop(self, message: _Message, tail: str, final: Final | None) -> None:
        args: dict[str, Any] = {"channel": self._channel, "ts": message.last.ts}
        if tail:
            args["markdown_text"] = tail
        if final is not None and final.answer_id is not None:
            buttons = self._formats.allows(self._team, Form.FEEDBACK_BUTTONS)
            make = feedback_buttons if buttons else thumb_buttons
            args["blocks"] = [make(final.answer_id)]
        async with self._slot(self._stop_spec) as budget:
            await self._limited(
                budget, self._call("chat.stopStream", self._client.chat_stopStream(**args))
            )
        message.streaming = False

    async def _rotate(self, message: _Message) -> None:
        """Stop the streamed message that has run long and go on in a new one."""
        last = message.last
        closer = fence_closer(last.prefix + message.sent[last.offset :])
        await self._stop(message, closer, None)
        opening = open_fence(last.prefix + message.sent[last.offset :])
        prefix = f"{opening}\n" if opening is not None else ""
        async with self._slot(self._start_spec) as budget:
            ts = await self._limited(budget, self._start(prefix))
        message.segments.append(_Segment(ts, self._clock.monotonic(), len(message.sent), prefix))
        message.streaming = True

    async def _stop_filled(self) -> None:
        """The editor posts a message once the last one is full: that one's stream ends, with
        whatever of its text it does not show yet."""
        for message in self._messages.values():
            if not message.streaming or message.standard:
                continue
            if message.wanted.startswith(message.sent):
                await self._stop(message, message.wanted[len(message.sent) :], None)
                message.sent = message.wanted
            else:
                await self._rewrite(message, None)

    # -- the standard path -------------------------------------------------------------------------

    async def _rewrite(self, message: _Message, final: Final | None) -> None:
        """The message must show what a stream can't append: stop it, then edit it."""
        if message.streaming:
            try:
                await self._stop(message, "", None)
            except PlatformError as error:
                if not (refusal(error) and error_code(error) in NOT_STREAMING):
                    raise
            message.streaming = False
        message.standard = True
        await self._update(message, final)

    async def _update(self, message: _Message, final: Final | None) -> None:
        last = message.last
        if not message.wanted.startswith(message.sent[: last.offset]):
            raise PlatformError("the answer rewrote text an earlier streamed message shows")
        text = last.prefix + message.marked[last.offset :]
        await self._standard_edit(last.ts, text, final)

    async def _standard_post(self, text: str, final: Final | None) -> str:
        async with self._slot(self._standard.post_budget) as budget:
            return await self._limited(budget, self._standard.post(text, final=final))

    async def _standard_edit(self, ts: str, text: str, final: Final | None) -> None:
        async with self._slot(self._standard.edit_budget, interim=final is None) as budget:
            await self._limited(budget, self._standard.edit(ts, text, final=final))

    @asynccontextmanager
    async def _slot(self, spec: BudgetSpec, *, interim: bool = False) -> AsyncIterator[Budget]:
        """A granted call in `spec`'s budget: starts and stops are what people wait for."""
        rank: Rank = (Priority.INTERIM if interim else Priority.URGENT, self._clock.monotonic())
        budget = self._budgets.get(spec)
        async with budget.slot(lambda: rank):
            yield budget

    async def _limited(self, budget: Budget, call: Awaitable[_T]) -> _T:
        """A call in a budget of its own: its 429 pauses that budget, and the editor tries the
        write again later (as after an outage) rather than pausing the appends."""
        try:
            return await call
        except PlatformRateLimited as error:
            budget.pause(error.retry_after)
            raise _Paused(error.detail) from None

    async def _call(self, method: str, call: Awaitable[AsyncSlackResponse]) -> AsyncSlackResponse:
        return await call_slack(method, call)


class _Paused(PlatformUnavailable):
    """A call of the surface's own refused with a 429: nothing landed, the budget now waits."""
