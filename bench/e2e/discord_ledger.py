"""The benchmark Discord's books: which conversation each write the bot makes belongs to, when it
landed, what it shows, the 429s it met and the calls it made before a Retry-After had passed.

The platform (`bench/e2e/discord_platform.py`) feeds it from the fake Discord's hooks: every
routed REST call with its response, every write charged to a channel's budget, every call
against the global limit. "early" counts calls on a channel (or against the global limit) before
a Retry-After given there had passed; "early_own" only those by the conversation given it.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from typing import Any

from aiohttp import web

from bench.e2e import common
from bench.e2e.common import Conversation
from tests.fakes.discord import FakeDiscord, Interaction, RestCall

DEFERRED = 5  # interaction callback type: "thinking…", the response comes later
JOINS = ("", " ", "\n")  # separators tried between an answer's messages
ANSWER_TAG = re.compile(r"\bAnswer(\d+)\b")  # how every scripted answer starts (common.py)


def budget_key(channel_id: str) -> str:
    """The bucket the fake charges a message create/edit to (named as the bot names it)."""
    return f"discord:channel:{channel_id}"


class Record:
    """One conversation's messages as the platform holds them, and its Conversation figures."""

    def __init__(self, qid: int, channel_id: str) -> None:
        # The placeholder is the deferred interaction response, which no budget charges; every
        # create or edit after it is charged to the channel.
        key = budget_key(channel_id)
        self.conversation = Conversation(qid=qid, asked=0.0, post_key=key, edit_key=key)
        self.message_ids: list[str] = []
        self.write_times: list[float] = []
        self.limited_times: list[float] = []  # when its calls were answered 429
        self.rate_limited = 0
        self.early = 0  # calls on its channel before a Retry-After given there had passed
        self.early_own = 0  # ... before a Retry-After given to this conversation had passed
        self.blocked_until = 0.0

    @property
    def qid(self) -> int:
        return self.conversation.qid

    def to_json(self) -> dict[str, Any]:
        self.conversation.extra.update(
            rate_limited=self.rate_limited,
            early=self.early,
            early_own=self.early_own,
            messages=len(self.message_ids),
            write_times=self.write_times,
            limited_times=self.limited_times,
        )
        return self.conversation.to_json()


class Ledger:
    """Every conversation's Record, and the run's counts, kept from what `fake` is asked."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.records: dict[int, Record] = {}
        self.calls: Counter[str] = Counter()  # writes let through, per budget key
        self.early = 0
        self.early_own = 0
        self.unattributed = 0
        self.late_acks = 0
        self.last_write = 0.0
        self._by_interaction: dict[str, Record] = {}
        self._by_message: dict[str, Record] = {}
        self._blocked_until: dict[str, float] = {}  # budget key or "global" -> Retry-After end

    def open(self, qid: int, channel_id: str) -> Record:
        self.records[qid] = record = Record(qid, channel_id)
        return record

    def asked(self, record: Record, interaction: Interaction) -> None:
        """`interaction` (its /ask) has gone out to the bot."""
        record.conversation.asked = time.monotonic()
        self._by_interaction[interaction.id] = record

    def all_final(self) -> bool:
        return all(r.conversation.exact for r in self.records.values())

    # -- the limits -----------------------------------------------------------------------------

    def early_call(self, key: str, now: float) -> bool:
        """Count a call made under `key` before a Retry-After given there had passed."""
        if now < self._blocked_until.get(key, 0.0):
            self.early += 1
            return True
        return False

    def block(self, key: str, until: float) -> None:
        self._blocked_until[key] = max(self._blocked_until.get(key, 0.0), until)

    def spent(self, call: RestCall, channel_id: str, retry_after: float | None) -> None:
        """A write charged to the channel's budget: let through (None) or refused with a 429."""
        key = budget_key(channel_id)
        record = self._record_writing(call.parts)
        now = self.fake.clock()
        if self.early_call(key, now) and record is not None:
            record.early += 1
        if record is not None and now < record.blocked_until:
            record.early_own += 1
            self.early_own += 1
        if retry_after is None:
            self.calls[key] += 1
            return
        self.block(key, now + retry_after)
        if record is not None:
            record.blocked_until = max(record.blocked_until, now + retry_after)
            record.rate_limited += 1
            record.limited_times.append(now)

    def _record_writing(self, parts: list[str]) -> Record | None:
        """The conversation of a call, if it is a write to a known message."""
        if parts[0] == "webhooks" and len(parts) >= 3:
            interaction = self.fake.interaction_for_token(parts[2])
            return self._by_interaction.get(interaction.id) if interaction else None
        if parts[0] == "channels" and len(parts) == 4:
            return self._by_message.get(parts[3])
        return None

    # -- the writes -----------------------------------------------------------------------------

    def routed(self, call: RestCall, response: web.Response) -> None:
        """Attribute a successful call to its conversation and update that conversation."""
        match (call.method, call.parts, response.status):
            case ("POST", ["interactions", interaction_id, _, "callback"], 404):
                if interaction_id in self._by_interaction:
                    self.late_acks += 1
                return
        if response.status >= 300:
            return
        now = time.monotonic()
        record: Record | None = None
        created: dict[str, Any] | None = None
        match (call.method, call.parts):
            case ("POST", ["interactions", interaction_id, _, "callback"]):
                record = self._by_interaction.get(interaction_id)
                if record is not None:
                    record.conversation.acked = now
                    interaction = self.fake.interactions[interaction_id]
                    if interaction.original_id is not None:
                        self._claim(record, interaction.original_id)
                    if interaction.callbacks[-1]["type"] == DEFERRED:
                        return  # no text yet: not a write
            case ("PATCH", ["webhooks", _, token, "messages", _]) | (
                "POST",
                ["webhooks", _, token],
            ):
                found = self.fake.interaction_for_token(token)
                record = self._by_interaction.get(found.id) if found else None
                created = _body(response) if call.method == "POST" else None
            case ("POST", ["channels", _, "messages"]):
                created = _body(response)
                reference = (created.get("message_reference") or {}).get("message_id")
                record = self._by_message.get(str(reference))
                if record is None:
                    qid = _answer_tag(created.get("content") or "")
                    record = self.records.get(qid) if qid is not None else None
            case ("PATCH", ["channels", _, "messages", message_id]):
                record = self._by_message.get(message_id)
            case _:
                return
        self.last_write = now
        if record is None:
            self.unattributed += 1
            return
        if created is not None:
            self._claim(record, str(created["id"]))
        self._update(record, now)

    def _claim(self, record: Record, message_id: str) -> None:
        if message_id not in self._by_message:
            self._by_message[message_id] = record
            record.message_ids.append(message_id)

    def _update(self, record: Record, now: float) -> None:
        conversation = record.conversation
        conversation.writes += 1
        record.write_times.append(now)
        conversation.last_write = now
        texts = [self.fake.messages[m]["content"] for m in record.message_ids]
        # A split answer may keep or drop the space at each split; the reader sees it whole.
        shown = [common.shows_answer(sep.join(texts), record.qid) for sep in JOINS]
        some, exact = any(s for s, _ in shown), any(e for _, e in shown)
        if some and conversation.first_visible is None:
            conversation.first_visible = now
        if exact and not conversation.exact:
            conversation.final = now
        elif not exact:
            conversation.final = None
        conversation.exact = exact


def _body(response: web.Response) -> dict[str, Any]:
    assert isinstance(response.body, bytes)
    data: dict[str, Any] = json.loads(response.body)
    return data


def _answer_tag(text: str) -> int | None:
    found = ANSWER_TAG.search(text)
    return int(found.group(1)) if found else None
