"""Slack's native streaming as the fake serves it (chat.startStream, chat.appendStream,
chat.stopStream, per ../shared/specs/slack-methods/ and DESIGN.md): start and stop are Tier 2
and appends Tier 4, each a per-workspace window answered with 429 + Retry-After; `thread_ts` is
required, and `recipient_user_id`/`recipient_team_id` outside DMs; a stream ends by itself
`stream_lifetime` seconds after it started (Slack: about five minutes; tests shorten it), then
`message_not_in_streaming_state`; a streamed message holds at most `stream_max_chars` (about
11k; Slack documents no code for going past it, `msg_too_long` is assumed); chat.update on a
message still streaming is `streaming_state_conflict`. `stream_refusal` makes chat.startStream
answer that error (a workspace whose Slack does not stream)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.fakes.slack.markdown import markdown_error, notified
from tests.fakes.slack.rules import Window
from tests.fakes.slack.state import Message, Team, blocks

Answer = tuple[int, dict[str, Any], dict[str, str]]

STREAM_METHODS = frozenset({"chat.startStream", "chat.appendStream", "chat.stopStream"})
TIER_2 = (20, 60.0)  # chat.startStream, chat.stopStream: each, per workspace
TIER_4 = (100, 60.0)  # chat.appendStream
STREAM_LIFETIME = 300.0
STREAM_MAX_CHARS = 11_000
MAX_MARKDOWN = 12_000  # one call's markdown_text


class StreamsApi:
    """The three methods over the fake's messages; a mixin of `WebApi`."""

    messages: dict[tuple[str, str], Message]
    channels: dict[str, str]
    channel_types: dict[str, str]
    violations: list[str]
    notified: list[tuple[str, str]]
    _next_ts: Callable[[], str]
    replied_in_thread: Callable[[str, str | None], None]  # an assistant thread's status goes
    stream_lifetime: float = STREAM_LIFETIME
    stream_max_chars: int = STREAM_MAX_CHARS
    stream_refusal: str | None = None
    _stream_windows: dict[str, Window] | None = None
    _streaming: dict[tuple[str, str], float] | None = None  # (channel, ts) -> started

    def stream_limits(
        self,
        *,
        start: tuple[int, float] = TIER_2,
        stop: tuple[int, float] = TIER_2,
        append: tuple[int, float] = TIER_4,
    ) -> None:
        """Set the windows (calls, seconds) of the three methods, per workspace."""
        self._stream_windows = {
            "chat.startStream": Window(*start),
            "chat.stopStream": Window(*stop),
            "chat.appendStream": Window(*append),
        }

    @property
    def stream_windows(self) -> dict[str, Window]:
        if self._stream_windows is None:
            self.stream_limits()
        assert self._stream_windows is not None
        return self._stream_windows

    @property
    def stream_early_calls(self) -> list[str]:
        return [key for window in self.stream_windows.values() for key in window.early]

    def streaming(self, channel: str, ts: str) -> bool:
        """Whether the message streams still (started, not stopped, not timed out)."""
        if self._streaming is None:
            self._streaming = {}
        started = self._streaming.get((channel, ts))
        if started is None:
            return False
        if time.monotonic() - started >= self.stream_lifetime:
            del self._streaming[(channel, ts)]
            return False
        return True

    def stream_conflict(self, args: dict[str, Any]) -> Answer | None:
        """chat.update's answer for a message still streaming, else None."""
        if self.streaming(str(args.get("channel")), str(args.get("ts"))):
            return 200, {"ok": False, "error": "streaming_state_conflict"}, {}
        return None

    def stream_call(self, method: str, args: dict[str, Any], team: Team) -> Answer:
        channel = str(args.get("channel"))
        if self.channels.get(channel) != team.id:
            return _error("channel_not_found")
        wait = self.stream_windows[method].retry_after(team.id)
        if wait is not None:
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(wait)}
        text = str(args.get("markdown_text") or "")
        if len(text) > MAX_MARKDOWN:
            return _error("msg_too_long")
        if method == "chat.startStream":
            return self._start_stream(channel, args, team, text)
        message = self.messages.get((channel, str(args.get("ts"))))
        if message is None:
            return _error("message_not_found")
        if message.bot_id != team.bot_id:
            return _error("message_not_owned_by_app")
        if not self.streaming(channel, message.ts):
            return _error("message_not_in_streaming_state")
        if len(message.text) + len(text) > self.stream_max_chars:
            return _error("msg_too_long")
        if (
            method == "chat.stopStream"
            and (error := markdown_error({"blocks": args.get("blocks")}, team)) is not None
        ):
            return _error(error)  # the feedback element, as on chat.postMessage
        self.notified += [(message.ts, found) for found in notified(args, team)]
        if text:
            message.text += text
            message.history.append(message.text)
        if method == "chat.stopStream":
            assert self._streaming is not None
            del self._streaming[(channel, message.ts)]
            if "blocks" in args:
                message.blocks = blocks(args["blocks"])
            return 200, {"ok": True, "channel": channel, "ts": message.ts,
                         "message": message.to_json()}, {}  # fmt: skip
        return 200, {"ok": True, "channel": channel, "ts": message.ts}, {}

    def _start_stream(self, channel: str, args: dict[str, Any], team: Team, text: str) -> Answer:
        if self.stream_refusal is not None:
            return _error(self.stream_refusal)
        thread_ts = args.get("thread_ts")
        if not thread_ts or (channel, str(thread_ts)) not in self.messages:
            self.violations.append(f"chat.startStream: not a reply (thread_ts {thread_ts})")
            return _error("invalid_arguments")
        if self.channel_types.get(channel) != "im":
            if not args.get("recipient_user_id"):
                return _error("missing_recipient_user_id")
            if not args.get("recipient_team_id"):
                return _error("missing_recipient_team_id")
        if len(text) > self.stream_max_chars:
            return _error("msg_too_long")
        message = Message(
            channel=channel,
            ts=self._next_ts(),
            text=text,
            bot_id=team.bot_id,
            user=team.bot_user_id,
            thread_ts=str(thread_ts),
            markdown=True,
        )
        message.history.append(text)
        self.notified += [(message.ts, found) for found in notified(args, team)]
        self.messages[(channel, message.ts)] = message
        if self._streaming is None:
            self._streaming = {}
        self._streaming[(channel, message.ts)] = time.monotonic()
        self.replied_in_thread(channel, message.thread_ts)
        return 200, {"ok": True, "channel": channel, "ts": message.ts}, {}


def _error(code: str) -> Answer:
    return 200, {"ok": False, "error": code}, {}
