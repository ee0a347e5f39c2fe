"""Where a Slack answer is shown: a thread the streaming editor posts into and edits.

`SlackSurface` supplies the editor's few platform calls (chat.postMessage into the thread,
chat.update) through `web_api.call_slack`, and names the shared budgets they spend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.web_api import call_slack
from bot.settings import Settings
from bot.surface import BudgetSpec, Final, LimitedSurface, Limits

# Slack refuses chat.update past ~4,000 characters (msg_too_long); bytes are the safe measure.
MAX_MESSAGE_BYTES = 3500
SECTION_TEXT_LIMIT = 3000  # a section block's text holds at most 3,000 characters
FEEDBACK_UP = "feedback_up"
FEEDBACK_DOWN = "feedback_down"
FEEDBACK_BLOCK = "answer_feedback"


def feedback_blocks(text: str, answer_id: int) -> list[dict[str, Any]]:
    """The answer as section blocks, then 👍/👎 buttons whose value is the stored answer's id."""
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": chunk}}
        for chunk in _section_chunks(text)
    ]
    blocks.append(
        {
            "type": "actions",
            "block_id": FEEDBACK_BLOCK,
            "elements": [
                _button(FEEDBACK_UP, "👍", "Helpful", answer_id),
                _button(FEEDBACK_DOWN, "👎", "Not helpful", answer_id),
            ],
        }
    )
    return blocks


def _button(action_id: str, emoji: str, label: str, answer_id: int) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": emoji, "emoji": True},
        "value": str(answer_id),
        "accessibility_label": label,
    }


def _section_chunks(text: str) -> list[str]:
    # Split on line breaks where possible so a chunk boundary never cuts a word or a link.
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
        render: Callable[[str], str],
    ) -> None:
        self._client = client
        self._channel = channel
        self._thread_ts = thread_ts
        self._render = render
        # chat.update is limited per workspace, chat.postMessage per channel: name them so.
        super().__init__(
            Limits(
                max_size=MAX_MESSAGE_BYTES,
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
                unit="utf-8 bytes",  # as Slack counts
            )
        )

    def render(self, markdown: str) -> str:
        return self._render(markdown)

    async def post(self, text: str, *, final: Final | None = None) -> str:
        response = await call_slack(
            "chat.postMessage",
            self._client.chat_postMessage(
                channel=self._channel,
                thread_ts=self._thread_ts,
                text=text,
                blocks=_blocks(text, final),
                unfurl_links=False,
                unfurl_media=False,
            ),
        )
        return str(response["ts"])

    async def edit(self, message_id: str, text: str, *, final: Final | None = None) -> None:
        await call_slack(
            "chat.update",
            self._client.chat_update(
                channel=self._channel, ts=message_id, text=text, blocks=_blocks(text, final)
            ),
        )


def _blocks(text: str, final: Final | None) -> list[dict[str, Any]] | None:
    # `text` stays as the notification and screen-reader fallback when blocks are shown.
    if final is None or final.answer_id is None:
        return None
    return feedback_blocks(text, final.answer_id)
