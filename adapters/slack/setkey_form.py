"""/setkey's form in Slack: a modal an admin pastes the key into, opened with the command's
trigger_id (views.open), and its submission, checked like the typed `/setkey <key>`.

A problem the bot finds in time is shown on the key's field (response_action "errors"), and a
saved key as the modal's new content (response_action "update"). Slack drops a submission not
answered within 3 seconds, and checking a key with the endpoint may take longer: past
`FORM_DEADLINE` the modal says the check goes on, and its outcome arrives ephemerally through the
command's response_url, carried in the view's private_metadata (which only this app sees). The
key is read from the submission, handed to the core's KeyAdmin and never logged or echoed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.setkey import (
    NO_PERMISSION_CHECK,
    NOT_ADMIN,
    SAVED,
    UNCHANGED,
    Asker,
    SetKey,
    problem,
)
from adapters.slack.web_api import call_slack
from bot.background import Background
from bot.errors import BotError, PlatformError

if TYPE_CHECKING:  # types only: importing an adapter loads no model client
    from bot.keys import KeyStatus

log = logging.getLogger(__name__)

CALLBACK_ID = "setkey_form"  # the view_submission listener's match
KEY_BLOCK = "api_key"  # the input's block_id: where "errors" point
KEY_ACTION = "api_key"
# Slack waits 3 seconds for the answer to a submission; the rest is for the network.
FORM_DEADLINE = 2.0
# The key field's length; the core refuses longer keys too (bot.keys.MAX_KEY_LENGTH, not
# imported: it would load the model client with the adapter).
MAX_KEY_CHARS = 512

TITLE = "Workspace API key"  # a modal title holds at most 24 characters
LABEL = "OpenAI-compatible API key"
HINT = (
    "Checked with the model endpoint before it is saved. Only its last 4 characters are ever "
    "shown, and it is stored encrypted."
)
REPLACES = "A key saved here replaces it."
STILL_CHECKING = (
    "Still checking the key with the model endpoint. The result will appear in the channel "
    "where you ran `/setkey`, visible only to you."
)
SAVE_FAILED = "Saving the key failed."
EMPTY_FIELD = "Paste the API key into this field."
FORM_FAILED = (
    "Couldn't open the form ({reason}). Run `/setkey` again, or type `/setkey` followed by the key."
)


@dataclass
class _Outcome:
    """A key check's result, for whichever is still waiting: the submission or the channel."""

    saved: asyncio.Future[tuple[bool, str]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    late: bool = False  # the submission was answered before the check ended


class SetKeyForm:
    def __init__(self, setkey: SetKey, tasks: Background) -> None:
        self._setkey = setkey
        self._tasks = tasks

    async def open(
        self, asker: Asker, trigger_id: str, response_url: str, client: AsyncWebClient
    ) -> str | None:
        """Open the form for `asker`; returns what to tell them if it could not be opened."""
        view = form_view(await self._setkey.keys.status(asker.workspace), response_url)
        try:
            await call_slack("views.open", client.views_open(trigger_id=trigger_id, view=view))
        except PlatformError as error:
            # A trigger_id lives 3 seconds: a slow users.info can outlast it.
            log.warning("/setkey could not open its form in %s: %s", asker.workspace, error.detail)
            return FORM_FAILED.format(reason=error.detail.rsplit(": ", 1)[-1])
        return None

    async def on_submit(
        self, ack: AsyncAck, view: dict[str, Any], asker: Asker, client: AsyncWebClient
    ) -> None:
        loop = asyncio.get_running_loop()
        answer_by = loop.time() + FORM_DEADLINE  # users.info's time counts too
        values = (view.get("state") or {}).get("values") or {}
        typed = str((values.get(KEY_BLOCK) or {}).get(KEY_ACTION, {}).get("value") or "")
        log.info("/setkey form submitted by %s in %s", asker.user, asker.workspace)
        try:
            admin = await self._setkey.is_admin(client, asker)
        except PlatformError as error:
            log.warning("/setkey form could not check %s: %s", asker.user, error.detail)
            await ack(response_action="errors", errors={KEY_BLOCK: NO_PERMISSION_CHECK})
            return
        if not admin:
            await ack(response_action="errors", errors={KEY_BLOCK: NOT_ADMIN})
            return
        if not typed.strip():  # the core's own message speaks of the typed command
            await ack(response_action="errors", errors={KEY_BLOCK: EMPTY_FIELD})
            return
        # A garbled key fails at once, before any request; checking with the endpoint may not.
        outcome = _Outcome()
        response_url = _response_url(view)
        self._tasks.spawn(self._save(typed, asker, outcome, response_url), "slack-setkey-form")
        await asyncio.wait({outcome.saved}, timeout=max(0.0, answer_by - loop.time()))
        # No await between this check and setting `late`: the save sees one or the other.
        if not outcome.saved.done():
            outcome.late = True
            await ack(response_action="update", view=result_view(STILL_CHECKING))
            return
        saved, message = outcome.saved.result()
        if saved:
            await ack(response_action="update", view=result_view(message))
        else:
            await ack(response_action="errors", errors={KEY_BLOCK: message})

    async def _save(
        self, key: str, asker: Asker, outcome: _Outcome, response_url: str | None
    ) -> None:
        try:
            last4 = await self._setkey.keys.set(asker.workspace, key, by=asker.user)
            result = (True, SAVED.format(last4=last4))
        except BotError as error:
            log.info("/setkey form refused in %s: %s", asker.workspace, type(error).__name__)
            result = (False, UNCHANGED.format(problem=problem(error)))
        except Exception:
            # Still an answer for the person waiting on the form; the log keeps the cause.
            log.exception("/setkey form crashed in %s", asker.workspace)
            result = (False, UNCHANGED.format(problem=SAVE_FAILED))
        outcome.saved.set_result(result)
        if outcome.late:
            await _tell(response_url, result[1], asker)


async def _tell(response_url: str | None, message: str, asker: Asker) -> None:
    if response_url is None:
        log.warning("/setkey form in %s: no response_url to report the check on", asker.workspace)
        return
    respond = AsyncRespond(response_url=response_url)
    await respond(text=message, response_type="ephemeral", replace_original=False)


def _response_url(view: dict[str, Any]) -> str | None:
    try:
        metadata = json.loads(str(view.get("private_metadata") or "{}"))
    except ValueError:
        return None
    url = metadata.get("response_url") if isinstance(metadata, dict) else None
    return str(url) if url else None


def form_view(key: KeyStatus, response_url: str) -> dict[str, Any]:
    """The modal: which key answers now, and one field for the new key."""
    status = f"{key.sentence()} {REPLACES}" if key.source == "own" else key.sentence()
    return {
        "type": "modal",
        "callback_id": CALLBACK_ID,
        "title": _plain(TITLE),
        "submit": _plain("Save"),
        "close": _plain("Cancel"),
        "private_metadata": json.dumps({"response_url": response_url}),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": status}},
            {
                "type": "input",
                "block_id": KEY_BLOCK,
                "label": _plain(LABEL),
                "hint": _plain(HINT),
                "element": {
                    "type": "plain_text_input",
                    "action_id": KEY_ACTION,
                    "placeholder": _plain("sk-..."),
                    "max_length": MAX_KEY_CHARS,
                },
            },
        ],
    }


def result_view(message: str) -> dict[str, Any]:
    """The modal once the form is done with: what happened, and a button to close it."""
    return {
        "type": "modal",
        "callback_id": f"{CALLBACK_ID}_done",
        "title": _plain(TITLE),
        "close": _plain("Done"),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": message}}],
    }


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}
