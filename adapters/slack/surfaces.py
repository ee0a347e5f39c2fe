"""Which surface a Slack answer gets: Slack's native stream or the standard chat.update path.

`SurfaceChoice.surface` is the one place the choice is made (the listeners call it for DMs,
the assistant-thread listeners for their threads): a native stream where the caller says the
thread can take one (`streamable`), SLACK_NATIVE_STREAMING is on, the workspace has not refused
chat.startStream lately, and its start/stop budget has room for one more answer this window;
otherwise the standard `SlackSurface`. Room is counted per workspace in a sliding window
(`slack:{team}:chat.startStream` in the question limits' counter, so with REDIS_URL replicas
share it), leaving a few starts of each window to rotations; a burst past it is answered by
chat.update, not queued behind Tier 2.

`MendingSlackSurface` is what the journal ends a dead process's answer with: a message still
streaming refuses chat.update (`streaming_state_conflict`) until Slack times the stream out, so
the stream is stopped first and the edit made again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.formats import SlackFormats
from adapters.slack.native_stream import (
    NOT_STREAMING,
    STREAMING_CONFLICT,
    NativeStreamSurface,
    error_code,
)
from adapters.slack.surface import SlackSurface
from adapters.slack.web_api import call_slack
from bot.errors import PlatformError
from bot.limits import Counter, InProcessCounter, Limit
from bot.settings import Settings
from bot.shared import Shared
from bot.shared_limits import SharedCounter
from bot.streaming.editor import Editor
from bot.surface import Final, Surface

log = logging.getLogger(__name__)

# Starts of each window kept for rotations (a long answer's next streamed message).
ROTATION_RESERVE = 2
# Seconds a workspace that refused chat.startStream answers the standard way before trying again
# (its admins may add the scope or the feature meanwhile).
REFUSAL_MEMORY = 600.0


class SurfaceChoice:
    """One per Slack app: picks each answer's surface."""

    def __init__(
        self,
        settings: Settings,
        editor: Editor,
        formats: SlackFormats,
        counter: Counter,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._editor = editor
        self._formats = formats
        self._counter = counter  # its window is SLACK_STREAM_WINDOW
        self._clock = clock
        self._refused: dict[str, float] = {}  # team -> when chat.startStream was refused

    async def surface(
        self,
        client: AsyncWebClient,
        *,
        team: str,
        channel: str,
        thread_ts: str,
        user: str | None,
        streamable: bool,
    ) -> Surface:
        standard = SlackSurface(
            client, self._settings, team=team, channel=channel, thread_ts=thread_ts,
            formats=self._formats,
        )  # fmt: skip
        if not (streamable and self._settings.slack_native_streaming and standard.markdown):
            return standard
        refused = self._refused.get(team)
        if refused is not None and self._clock() - refused < REFUSAL_MEMORY:
            return standard
        room = max(1, self._settings.slack_stream_rate - ROTATION_RESERVE)
        if await self._counter.take([Limit(f"slack:{team}:chat.startStream", room, "workspace")]):
            return standard  # this window's starts are spoken for
        return NativeStreamSurface(
            standard, client, self._settings, self._editor.budgets, self._editor.clock,
            self._formats, team=team, channel=channel, thread_ts=thread_ts, recipient=user,
            on_refused=self._note_refused,
        )  # fmt: skip

    def _note_refused(self, team: str) -> None:
        self._refused[team] = self._clock()


class MendingSlackSurface(SlackSurface):
    """A `SlackSurface` whose edits stop a message's stream when Slack says it still streams."""

    async def edit(self, message_id: str, text: str, *, final: Final | None = None) -> None:
        try:
            await super().edit(message_id, text, final=final)
            return
        except PlatformError as error:
            if error_code(error) != STREAMING_CONFLICT:
                raise
        log.info("an interrupted answer's message still streams: stopping it to end it")
        try:
            await call_slack(
                "chat.stopStream",
                self._client.chat_stopStream(channel=self._channel, ts=message_id),
            )
        except PlatformError as error:
            if error_code(error) not in NOT_STREAMING:  # it may have timed out meanwhile
                raise
        await super().edit(message_id, text, final=final)


def stream_counter(settings: Settings, shared: Shared | None) -> Counter:
    """The count of native streams started per workspace, shared with replicas on REDIS_URL."""
    window = settings.slack_stream_window
    return SharedCounter(shared, window) if shared is not None else InProcessCounter(window=window)
