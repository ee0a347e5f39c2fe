"""What each workspace's Slack accepts of the newer message forms, learnt from its refusals.

Answers go out in standard Markdown (`markdown_text`, or a markdown block when the message also
carries feedback) with Slack's feedback buttons element (`feedback_buttons` in a
`context_actions` block). A Slack that predates them refuses them: it ignores an unknown
`markdown_text` and so finds no text at all (`no_text`), and it refuses a block type it does not
know (`invalid_blocks`). The first such refusal in a workspace is logged with its reason and
remembered for the life of the process, and the workspace's messages then take the older form
(mrkdwn text and section blocks; 👍/👎 buttons) with no further refused call. A form once
accepted is remembered too, so a later `invalid_blocks` is not blamed on it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum

log = logging.getLogger(__name__)

# Errors meaning the workspace's Slack did not take `markdown_text` (chat.postMessage and
# chat.update in ../shared/specs/slack-methods/): an unknown argument is ignored, so an old
# Slack finds no text; a stricter one names the argument.
MARKDOWN_TEXT_REFUSALS = frozenset({"no_text", "invalid_arg_name", "invalid_arguments"})
# Errors meaning a block in the message is of a kind the workspace's Slack does not know.
BLOCK_REFUSALS = frozenset({"invalid_blocks", "invalid_blocks_format"})


class Form(Enum):
    MARKDOWN = "standard Markdown (markdown_text, markdown block)"
    FEEDBACK_BUTTONS = "the feedback buttons element"


@dataclass(frozen=True)
class Sent:
    """Which of the newer forms one call used, and how: `markdown_text` or blocks."""

    markdown_text: bool = False
    markdown_block: bool = False
    feedback_buttons: bool = False

    @property
    def forms(self) -> set[Form]:
        found = set()
        if self.markdown_text or self.markdown_block:
            found.add(Form.MARKDOWN)
        if self.feedback_buttons:
            found.add(Form.FEEDBACK_BUTTONS)
        return found


@dataclass
class _Workspace:
    refused: set[Form] = field(default_factory=set)
    accepted: set[Form] = field(default_factory=set)


class SlackFormats:
    """One per process: per workspace, the newer forms its Slack refused or accepted."""

    def __init__(self) -> None:
        self._teams: dict[str, _Workspace] = {}

    def allows(self, team: str, form: Form) -> bool:
        """Whether to send `form` to `team` (yes until its Slack refused it)."""
        found = self._teams.get(team)
        return found is None or form not in found.refused

    def accepted(self, team: str, sent: Sent) -> None:
        self._teams.setdefault(team, _Workspace()).accepted |= sent.forms

    def refused(self, team: str, sent: Sent, method: str, code: str | None) -> bool:
        """Note what Slack's `code` for a call that used `sent` says the workspace refuses;
        True when it names a form to stop sending (the call is worth making again without it)."""
        workspace = self._teams.setdefault(team, _Workspace())
        form: Form | None = None
        if sent.markdown_text and code in MARKDOWN_TEXT_REFUSALS:
            form = Form.MARKDOWN
        elif code in BLOCK_REFUSALS:
            # The newest form first: a Slack knowing feedback buttons knows Markdown too.
            unproven = [
                candidate
                for candidate, used in (
                    (Form.FEEDBACK_BUTTONS, sent.feedback_buttons),
                    (Form.MARKDOWN, sent.markdown_block),
                )
                if used and candidate not in workspace.accepted
            ]
            form = unproven[0] if unproven else None
        if form is None:
            return False
        if form in workspace.refused:
            return True  # another answer's call learnt it meanwhile
        workspace.refused.add(form)
        log.warning(
            "Slack in workspace %s refused %s (%s answered %s): its answers use the older form "
            "from now on",
            team,
            form.value,
            method,
            code,
        )
        return True
