"""Where a Slack answer is shown: a thread the streaming editor posts into and edits.

`SlackSurface` supplies the editor's few platform calls (chat.postMessage into the thread,
chat.update) through `web_api.call_slack`, and names the shared budgets they spend. Answers go
out as standard Markdown (`markdown_text`, up to 12,000 characters a message; the final message,
which also carries the feedback buttons element, as a markdown block, since `markdown_text` can't
be combined with blocks), with every mention made inert (`markdown.inert`). Where the
workspace's Slack refuses those (`formats`), the same text goes as mrkdwn (`mrkdwn.to_mrkdwn`,
3,500 bytes a message) with 👍/👎 buttons: the call refused is made again in the older form,
and the editor splits the rest of the answer at the smaller size.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from adapters.slack.feedback import feedback_buttons, thumb_buttons
from adapters.slack.formats import Form, Sent, SlackFormats
from adapters.slack.markdown import characters, inert
from adapters.slack.mrkdwn import to_mrkdwn
from adapters.slack.web_api import SlackRefused, call_slack
from bot.settings import Settings
from bot.surface import BudgetSpec, Final, LimitedSurface, Limits

# markdown_text and the markdown blocks of one message hold at most 12,000 characters.
MAX_MARKDOWN_CHARS = 12_000
# Slack refuses chat.update past ~4,000 characters (msg_too_long); bytes are the safe measure.
MAX_MESSAGE_BYTES = 3500
SECTION_TEXT_LIMIT = 3000  # a section block's text holds at most 3,000 characters
# The `text` beside blocks is only the notification and screen-reader fallback; chat.update
# refuses one past 4,000 characters.
FALLBACK_CHARS = 3000
MRKDWN_CACHE = 64  # conversions kept: fitting measures the same candidate texts repeatedly

Payload = dict[str, Any]


class SlackSurface(LimitedSurface):
    """One answer in one Slack thread, posted and edited with the workspace's bot token."""

    def __init__(
        self,
        client: AsyncWebClient,
        settings: Settings,
        *,
        team: str,
        channel: str,
        thread_ts: str,
        formats: SlackFormats,
    ) -> None:
        self._client = client
        self._team = team
        self._channel = channel
        self._thread_ts = thread_ts
        self._formats = formats
        # Messages whose last write had section blocks: an update without blocks would leave
        # them showing (Slack keeps a message's blocks unless the update replaces them).
        self._sectioned: set[str] = set()
        # chat.update is limited per workspace, chat.postMessage per channel: name them so.
        super().__init__(
            Limits(
                max_size=MAX_MARKDOWN_CHARS,
                edit_budget=BudgetSpec(
                    f"slack:{team}:chat.update",
                    settings.slack_update_rate,
                    settings.slack_update_window,
                ),
                post_budget=BudgetSpec(
                    f"slack:{team}:{channel}:chat.postMessage",
                    settings.slack_post_rate,
                    settings.slack_post_window,
                ),
            )
        )

    @property
    def markdown(self) -> bool:
        """Whether this workspace's Slack takes standard Markdown (until it refuses it)."""
        return self._formats.allows(self._team, Form.MARKDOWN)

    @property
    def max_size(self) -> int:
        # Read at every layout: a refusal mid-answer shrinks the rest of its messages.
        return MAX_MARKDOWN_CHARS if self.markdown else MAX_MESSAGE_BYTES

    def measure(self, text: str) -> int:
        if self.markdown:
            return characters(text)
        return len(_mrkdwn(text).encode("utf-8"))  # as Slack counts mrkdwn, in bytes

    def render(self, markdown: str) -> str:
        # Markdown in either form: the mrkdwn form is made from it when sent.
        return inert(markdown)

    async def post(self, text: str, *, final: Final | None = None) -> str:
        def call(payload: Payload) -> Awaitable[AsyncSlackResponse]:
            return self._client.chat_postMessage(
                channel=self._channel,
                thread_ts=self._thread_ts,
                unfurl_links=False,
                unfurl_media=False,
                **payload,
            )

        return await self._send("chat.postMessage", call, text, final, None)

    async def edit(self, message_id: str, text: str, *, final: Final | None = None) -> None:
        def call(payload: Payload) -> Awaitable[AsyncSlackResponse]:
            return self._client.chat_update(channel=self._channel, ts=message_id, **payload)

        await self._send("chat.update", call, text, final, message_id)

    async def _send(
        self,
        method: str,
        call: Callable[[Payload], Awaitable[AsyncSlackResponse]],
        text: str,
        final: Final | None,
        message_id: str | None,
    ) -> str:
        """Make the call, again in the older form where Slack refuses a newer one (at most once
        per form: each refusal takes one away for good); the message's id."""
        while True:
            sectioned = message_id in self._sectioned
            payload, sent = self._payload(text, final, sectioned=sectioned)
            try:
                response = await call_slack(method, call(payload))
            except SlackRefused as error:
                if not self._formats.refused(self._team, sent, method, error.code):
                    raise
                continue
            self._formats.accepted(self._team, sent)
            written = message_id or str(response["ts"])
            if any(block["type"] == "section" for block in payload.get("blocks", [])):
                self._sectioned.add(written)
            else:
                self._sectioned.discard(written)
            return written

    def _payload(
        self, text: str, final: Final | None, *, sectioned: bool = False
    ) -> tuple[Payload, Sent]:
        answer_id = final.answer_id if final is not None else None
        markdown = self.markdown
        buttons = self._formats.allows(self._team, Form.FEEDBACK_BUTTONS)
        feedback: list[Payload] = []
        if answer_id is not None:
            feedback = [feedback_buttons(answer_id) if buttons else thumb_buttons(answer_id)]
        used_buttons = bool(feedback) and buttons
        if markdown and not feedback:
            return {"markdown_text": text}, Sent(markdown_text=True)
        if markdown:
            blocks = [{"type": "markdown", "text": text}, *feedback]
            return (
                {"text": _fallback(text), "blocks": blocks},
                Sent(markdown_block=True, feedback_buttons=used_buttons),
            )
        converted = _mrkdwn(text)
        fits = len(converted.encode("utf-8")) <= MAX_MESSAGE_BYTES
        if not feedback and fits and not sectioned:
            return {"text": converted}, Sent()
        # Sections hold what the `text` field can't (a refusal mid-answer may leave a message
        # laid out for Markdown's size), and keep replacing the sections a message shows.
        sections = [
            {"type": "section", "text": {"type": "mrkdwn", "text": chunk}}
            for chunk in section_chunks(converted)
        ]
        return (
            {"text": _fallback(text), "blocks": [*sections, *feedback]},
            Sent(feedback_buttons=used_buttons),
        )


@lru_cache(maxsize=MRKDWN_CACHE)
def _mrkdwn(markdown: str) -> str:
    return to_mrkdwn(markdown)


def _fallback(markdown: str) -> str:
    """The mrkdwn `text` shown where blocks can't be (notifications, screen readers)."""
    converted = _mrkdwn(markdown)
    if len(converted) <= FALLBACK_CHARS:
        return converted
    cut = converted.rfind("\n", 0, FALLBACK_CHARS - 1)
    return converted[: cut if cut > 0 else FALLBACK_CHARS - 1].rstrip() + "…"


def section_chunks(text: str) -> list[str]:
    """`text` in pieces a section block holds, cut at line breaks where possible so a piece
    never ends inside a word or a link."""
    chunks: list[str] = []
    rest = text
    while len(rest) > SECTION_TEXT_LIMIT:
        cut = rest.rfind("\n", 0, SECTION_TEXT_LIMIT)
        if cut <= 0:
            cut = SECTION_TEXT_LIMIT
        chunks.append(rest[:cut])
        rest = rest[cut:].lstrip("\n")
    if rest.strip():
        chunks.append(rest)
    return chunks
