"""Modals in the fake Slack: the trigger_ids it hands out with commands and clicks (each good
once, for Slack's 3 seconds), views.open with one of them, the views a person has open, and what
becomes of a view when the bot answers its submission (`errors`, `update`, or closed), with
Slack's Block Kit limits checked on every view the bot sends."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.slack.state import APP_ID, SlackState, Team

Answer = tuple[int, dict[str, Any], dict[str, str]]  # HTTP status, JSON body, headers

TRIGGER_LIFETIME = 3.0  # seconds a trigger_id can be exchanged for a view
# Block Kit's limits on a modal (docs.slack.dev, "Views" and "Blocks").
TITLE_LIMIT = 24  # title, submit and close texts
CALLBACK_ID_LIMIT = 255
PRIVATE_METADATA_LIMIT = 3000
BLOCKS_LIMIT = 100
LABEL_LIMIT = 2000  # an input's label and hint
PLACEHOLDER_LIMIT = 150
INPUT_MAX_LENGTH = 3000  # a plain_text_input's max_length


@dataclass
class Trigger:
    team: str
    user: str
    issued: float  # time.monotonic()


@dataclass
class View:
    """A modal a person has open: as the bot last sent it, and what happened to it since."""

    id: str
    team: str
    user: str
    data: dict[str, Any]
    hash: str
    open: bool = True
    errors: dict[str, str] = field(default_factory=dict)  # block_id -> message, last shown
    history: list[dict[str, Any]] = field(default_factory=list)  # every content shown

    def inputs(self) -> dict[str, str]:
        """block_id -> action_id of the view's input blocks."""
        return {
            block["block_id"]: block["element"]["action_id"]
            for block in self.data.get("blocks", [])
            if block.get("type") == "input"
        }

    def text(self) -> str:
        """Everything the view shows as text, for assertions."""
        return json.dumps(self.data, ensure_ascii=False)

    def to_json(self, values: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            **self.data,
            "id": self.id,
            "team_id": self.team,
            "app_id": APP_ID,
            "hash": self.hash,
            "root_view_id": self.id,
            "state": {"values": values or {}},
        }


class ViewsApi(SlackState):
    """views.open over the state; the submission side is in `events.SlackSender.submit`."""

    def __init__(self) -> None:
        super().__init__()
        self.triggers: dict[str, Trigger] = {}
        self.views: dict[str, View] = {}

    def issue_trigger(self, team_id: str, user: str) -> str:
        trigger_id = f"{next(self._ids)}.{team_id}.trigger"
        self.triggers[trigger_id] = Trigger(team_id, user, time.monotonic())
        return trigger_id

    def open_views(self, user: str) -> list[View]:
        return [v for v in self.views.values() if v.user == user and v.open]

    def _views_open(self, team: Team, args: dict[str, Any]) -> Answer:
        trigger = self.triggers.pop(str(args.get("trigger_id")), None)
        if trigger is None:
            # Slack tells an unknown and an already used trigger apart only by its text.
            return 200, {"ok": False, "error": "invalid_arguments"}, {}
        if trigger.team != team.id:
            return 200, {"ok": False, "error": "invalid_arguments"}, {}
        if time.monotonic() - trigger.issued > TRIGGER_LIFETIME:
            return 200, {"ok": False, "error": "expired_trigger_id"}, {}
        data = _view_argument(args.get("view"))
        problems = view_problems(data)
        if problems:
            self.violations += [f"views.open: {problem}" for problem in problems]
            return 200, {"ok": False, "error": "invalid_arguments"}, {}
        view = View(f"V{next(self._ids):08d}", team.id, trigger.user, data, self._hash())
        view.history.append(data)
        self.views[view.id] = view
        return 200, {"ok": True, "view": view.to_json()}, {}

    def answered(self, view: View, status: int, body: str) -> None:
        """What Slack does with the bot's answer to a submission of `view`."""
        if status != 200:
            self.violations.append(f"view_submission answered with HTTP {status}")
            return
        answer: dict[str, Any] = json.loads(body) if body.strip() else {}
        action = answer.get("response_action")
        if action == "errors":
            errors = dict(answer.get("errors") or {})
            unknown = set(errors) - set(view.inputs())
            if unknown or not errors:
                self.violations.append(f"view_submission errors for no input: {sorted(unknown)}")
            view.errors = errors  # the modal stays open, the messages under their fields
        elif action == "update":
            data = dict(answer.get("view") or {})
            problems = view_problems(data)
            self.violations += [f"view_submission update: {problem}" for problem in problems]
            view.data, view.errors, view.hash = data, {}, self._hash()
            view.history.append(data)
        elif action in (None, "clear"):
            view.open = False
        else:
            self.violations.append(f"view_submission: unknown response_action {action!r}")

    def _hash(self) -> str:
        return f"{int(time.time())}.{next(self._ids)}"


def _view_argument(value: Any) -> dict[str, Any]:
    found = json.loads(value) if isinstance(value, str) else value
    return dict(found or {})


def view_problems(view: dict[str, Any]) -> list[str]:
    """Where a modal breaks Block Kit's rules (Slack refuses it with invalid_arguments)."""
    found: list[str] = []
    if view.get("type") != "modal":
        found.append(f"type {view.get('type')!r} is not modal")
    for name in ("title", "submit", "close"):
        text = view.get(name)
        if text is None:
            if name == "title":
                found.append("a modal needs a title")
            continue
        found += _plain_problems(name, text, TITLE_LIMIT)
    if len(str(view.get("callback_id", ""))) > CALLBACK_ID_LIMIT:
        found.append("callback_id too long")
    if len(str(view.get("private_metadata", ""))) > PRIVATE_METADATA_LIMIT:
        found.append("private_metadata too long")
    blocks = view.get("blocks") or []
    if not 0 < len(blocks) <= BLOCKS_LIMIT:
        found.append(f"{len(blocks)} blocks")
    has_input = False
    for block in blocks:
        if block.get("type") == "input":
            has_input = True
            found += _input_problems(block)
    if has_input and "submit" not in view:
        found.append("a modal with inputs needs a submit button")
    return found


def _plain_problems(name: str, text: Any, limit: int) -> list[str]:
    if not isinstance(text, dict) or text.get("type") != "plain_text":
        return [f"{name} must be a plain_text object"]
    if not 0 < len(str(text.get("text", ""))) <= limit:
        return [f"{name} text must be 1-{limit} characters"]
    return []


def _input_problems(block: dict[str, Any]) -> list[str]:
    found = _plain_problems("label", block.get("label"), LABEL_LIMIT)
    if "hint" in block:
        found += _plain_problems("hint", block["hint"], LABEL_LIMIT)
    element = block.get("element") or {}
    if not block.get("block_id") or not element.get("action_id"):
        found.append("an input needs a block_id and an action_id")
    if element.get("type") == "plain_text_input":
        if "placeholder" in element:
            found += _plain_problems("placeholder", element["placeholder"], PLACEHOLDER_LIMIT)
        if not 0 < int(element.get("max_length", INPUT_MAX_LENGTH)) <= INPUT_MAX_LENGTH:
            found.append(f"max_length must be 1-{INPUT_MAX_LENGTH}")
    return found
