"""The feedback under a finished Slack answer, and what a click on it says.

Slack's feedback buttons element (`feedback_buttons` in a `context_actions` block) where the
workspace's Slack has it, else 👍/👎 buttons in an `actions` block (see `formats`). Both carry
the stored answer's id: the two buttons each their own action_id with the id as value; the
element one action_id, and a value per button naming the vote and the id (`good:42`).
"""

from __future__ import annotations

from typing import Any

FEEDBACK_UP = "feedback_up"
FEEDBACK_DOWN = "feedback_down"
FEEDBACK = "feedback"  # the feedback buttons element's action_id
FEEDBACK_BLOCK = "answer_feedback"
GOOD = "good"
BAD = "bad"


def feedback_buttons(answer_id: int) -> dict[str, Any]:
    """A context_actions block holding the feedback buttons element."""
    return {
        "type": "context_actions",
        "block_id": FEEDBACK_BLOCK,
        "elements": [
            {
                "type": "feedback_buttons",
                "action_id": FEEDBACK,
                "positive_button": _choice("👍", f"{GOOD}:{answer_id}", "Helpful"),
                "negative_button": _choice("👎", f"{BAD}:{answer_id}", "Not helpful"),
            }
        ],
    }


def thumb_buttons(answer_id: int) -> dict[str, Any]:
    """An actions block with a 👍 and a 👎 button, for a Slack without the element."""
    return {
        "type": "actions",
        "block_id": FEEDBACK_BLOCK,
        "elements": [
            {"type": "button", "action_id": action_id, **_choice(emoji, str(answer_id), label)}
            for action_id, emoji, label in (
                (FEEDBACK_UP, "👍", "Helpful"),
                (FEEDBACK_DOWN, "👎", "Not helpful"),
            )
        ],
    }


def _choice(emoji: str, value: str, label: str) -> dict[str, Any]:
    return {
        "text": {"type": "plain_text", "text": emoji, "emoji": True},
        "value": value,
        "accessibility_label": label,
    }


def vote(action: dict[str, Any]) -> tuple[int, str]:
    """The vote (+1 or -1) and the answer id, as sent, that a click on either form carries;
    the id is "" when the value is not one the bot wrote."""
    value = str(action.get("value", ""))
    if action.get("action_id") == FEEDBACK:
        kind, _, answer = value.partition(":")
        return (1 if kind == GOOD else -1), answer if kind in (GOOD, BAD) else ""
    return (1 if action.get("action_id") == FEEDBACK_UP else -1), value
