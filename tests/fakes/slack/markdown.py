"""Standard Markdown and the feedback buttons element in the fake Slack: `markdown_text` (12,000
characters, never with `text` or `blocks`: markdown_text_conflict), the markdown block (12,000
characters across a message's markdown blocks), the `context_actions` block holding
`feedback_buttons`; a workspace whose Slack predates them (`Team.markdown`,
`Team.feedback_buttons` False) ignores `markdown_text` (so: no_text) and refuses those blocks
(invalid_blocks), as an old Slack does. It also finds who a message would notify: the mentions
Slack acts on in mrkdwn, and, in Markdown (taken at its worst, as if Slack read mentions in code
and link targets too), the same after entities are decoded, bare @here/@channel/@everyone and
links whose target is a mention."""

from __future__ import annotations

import html
import re
from typing import Any

from tests.fakes.slack.state import Message, Team, blocks

MAX_MARKDOWN = 12_000  # markdown_text, and a message's markdown blocks together
MAX_FEEDBACK_TEXT = 75  # a feedback button's text
MAX_CONTEXT_ACTIONS = 5  # elements in a context_actions block

_MRKDWN_MENTION = re.compile(r"<([!@][^<>|]*)")
_MARKDOWN_MENTIONS = (
    _MRKDWN_MENTION,
    re.compile(r"(?<![\w@])(@(?:here|channel|everyone))\b", re.IGNORECASE),
    re.compile(r"\]\(\s*<?\s*([!@]\w[^)\s>]*)"),  # [x](@U1), [x](<!here>)
    re.compile(r"^ {0,3}\[[^\]\n]+\]:[ \t]*<?([!@]\w\S*)", re.MULTILINE),  # [r]: @U1
)


def markdown_error(args: dict[str, Any], team: Team) -> str | None:
    """Slack's error for the Markdown and feedback parts of a chat.postMessage / chat.update,
    or None."""
    found = blocks(args.get("blocks")) or []
    markdown_chars = 0
    for block in found:
        kind = block.get("type")
        if kind == "markdown":
            if not team.markdown or not str(block.get("text") or "").strip():
                return "invalid_blocks"
            markdown_chars += len(str(block["text"]))
        elif kind == "context_actions" and not (
            team.feedback_buttons and _context_actions_valid(block)
        ):
            return "invalid_blocks"
    if markdown_chars > MAX_MARKDOWN:
        return "msg_blocks_too_long"
    if "markdown_text" in args and team.markdown:
        if args.get("text") or args.get("blocks"):
            return "markdown_text_conflict"
        markdown = str(args["markdown_text"])
        if not markdown.strip():
            return "no_text"
        if len(markdown) > MAX_MARKDOWN:
            return "msg_too_long"  # Slack names no error for it; the bot must never send one
    return None


def uses_markdown_text(args: dict[str, Any], team: Team) -> bool:
    """Whether the call's content is its `markdown_text` (an old Slack ignores the argument)."""
    return "markdown_text" in args and team.markdown


def _context_actions_valid(block: dict[str, Any]) -> bool:
    elements = block.get("elements") or []
    if not 0 < len(elements) <= MAX_CONTEXT_ACTIONS:
        return False
    for element in elements:
        if element.get("type") != "feedback_buttons":
            return False
        for side in ("positive_button", "negative_button"):
            button = element.get(side) or {}
            text = button.get("text") or {}
            if text.get("type") != "plain_text" or not 0 < len(text.get("text", "")) <= (
                MAX_FEEDBACK_TEXT
            ):
                return False
            if not isinstance(button.get("value"), str) or not button["value"]:
                return False
    return True


def notified(args: dict[str, Any], team: Team) -> list[str]:
    """The mentions a message with these arguments would notify (`<!here>`, `@U1`...)."""
    found: list[str] = []
    markdown = [str(args["markdown_text"])] if uses_markdown_text(args, team) else []
    mrkdwn = [] if markdown else [str(args.get("text") or "")]
    for block in blocks(args.get("blocks")) or []:
        if block.get("type") == "markdown":
            markdown.append(str(block.get("text") or ""))
        elif block.get("type") == "section":
            mrkdwn.append(str((block.get("text") or {}).get("text") or ""))
    for text in mrkdwn:
        found += _MRKDWN_MENTION.findall(text)
    for text in markdown:
        decoded = html.unescape(text)
        for pattern in _MARKDOWN_MENTIONS:
            found += pattern.findall(decoded)
    return found


def show(message: Message, args: dict[str, Any], team: Team, *, update: bool) -> list[str]:
    """Put what a chat.postMessage (or, `update`, a chat.update) carries into `message`, add it
    to its history; the mentions it would notify."""
    if uses_markdown_text(args, team):
        message.text, message.markdown, message.blocks = str(args["markdown_text"]), True, None
    else:
        message.text, message.markdown = str(args.get("text") or ""), False
        if "blocks" in args or not update:  # an update without blocks keeps the message's
            message.blocks = blocks(args.get("blocks"))
    message.history.append(message.shown)
    return notified(args, team)


def written(args: dict[str, Any]) -> str:
    """What a chat.postMessage or chat.update shows (for observers that keep no `Message`):
    its `markdown_text`, else its markdown blocks, else its section blocks, else its `text`."""
    if "markdown_text" in args:
        return str(args["markdown_text"])
    found = blocks(args.get("blocks")) or []
    markdown = [str(b.get("text", "")) for b in found if b.get("type") == "markdown"]
    sections = [
        str((b.get("text") or {}).get("text", "")) for b in found if b.get("type") == "section"
    ]
    return "\n".join(markdown or sections) if markdown or sections else str(args.get("text") or "")
