"""What the bot's REST writes do to the fake Discord's state under Discord's rules: messages
created and edited (charged to the channel's budget, their flags checked and recorded, their links
previewed unless embeds are suppressed), interaction callbacks (within 3 seconds, once), commands
synced, threads started."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.fakes.discord import payloads
from tests.fakes.discord.payloads import TIMESTAMP
from tests.fakes.discord.people import People
from tests.fakes.discord.rules import (
    ACK_DEADLINE_SECONDS,
    EPHEMERAL,
    MAX_CONTENT,
    SETTABLE_FLAGS,
    SUPPRESS_EMBEDS,
    ChannelBudget,
    flags_problem,
    invalid,
    json_response,
    mentions_problem,
    previewed_links,
    unknown,
)
from tests.fakes.discord.state import FAKE_TOKEN, Interaction, MessageWrite, RestCall, snowflake

DEFAULT_ARCHIVE_MINUTES = 1440


class Writes(People):
    """The bot's writes on top of the gateway (a thread it creates is announced there)."""

    def __init__(
        self,
        *,
        token: str = FAKE_TOKEN,
        budget_rate: int = 5,
        budget_window: float = 5.0,
        advertise_budget: bool = True,
        clock: Callable[[], float] = time.monotonic,
        application_id: str | None = None,
    ) -> None:
        super().__init__(token=token, clock=clock, application_id=application_id)
        self.budget = ChannelBudget(budget_rate, budget_window, clock)
        # False models a limit discord.py can't see coming (Discord's shared per-channel cap):
        # no X-RateLimit headers on successes, so only 429s tell.
        self.advertise_budget = advertise_budget

    @property
    def budget_rate(self) -> int:
        return self.budget.rate

    @property
    def budget_window(self) -> float:
        return self.budget.window

    def _put_commands(self, scope: str, body: list[dict[str, Any]]) -> web.Response:
        if scope in self.refuse_commands:
            return json_response({"message": "Missing Access", "code": 50001}, status=403)
        self.command_syncs.append(scope)
        stored = []
        for command in body:
            item = {
                "id": snowflake(),
                "application_id": self.application_id,
                "version": snowflake(),
                "type": 1,
                "description": "",  # what Discord stores for a message command
                "default_member_permissions": None,
                "nsfw": False,
                **command,
            }
            if scope != "global":
                item["guild_id"] = scope
            stored.append(item)
        self.commands[scope] = stored
        return json_response(stored)

    def _callback(
        self, interaction_id: str, token: str, query: dict[str, str], body: dict[str, Any]
    ) -> web.Response:
        interaction = self.interactions.get(interaction_id)
        if interaction is None or interaction.token != token:
            return unknown("Unknown interaction", 10062)
        if self.clock() - interaction.created_at > ACK_DEADLINE_SECONDS:
            self.violations.append(f"interaction {interaction_id} acknowledged after 3 seconds")
            return unknown("Unknown interaction", 10062)  # what Discord answers then
        if interaction.callbacks:
            return json_response(
                {"message": "Interaction has already been acknowledged.", "code": 40060}, status=400
            )
        interaction.callbacks.append(body)
        kind, data = body["type"], body.get("data") or {}
        message: dict[str, Any] | None = None
        if kind in (4, 5):
            if not self._mentions_off(f"callback {kind}", data, needs_content=kind == 4):
                return invalid()
            if len(data.get("content") or "") > MAX_CONTENT:
                return self._too_long("interaction callback")
            if not self._flags_allowed(f"callback {kind}", "callback", data):
                return invalid()
            message = self._new_message(
                interaction.channel_id, self.users[self.bot_id], data.get("content", "")
            )
            message["flags"] = int(data.get("flags") or 0)
            message["loading"] = kind == 5
            message["components"] = data.get("components", [])
            message["webhook_id"] = self.application_id
            self.messages[message["id"]] = message
            interaction.original_id = message["id"]
            self._written("callback", message, data)
        elif kind != 9:
            return json_response(
                {"message": f"callback type {kind} unsupported", "code": 0}, status=400
            )
        if query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        return json_response(_callback_result(interaction, kind, message))

    def _create(self, call: RestCall, channel_id: str, *, webhook: bool = False) -> web.Response:
        body: dict[str, Any] = call.body
        if channel_id not in self.channels:
            return unknown("Unknown Channel", 10003)
        if not webhook and not self._bot_can_post(channel_id):
            self.violations.append(f"create in {channel_id}: the bot is not in that channel")
            return json_response({"message": "Missing Access", "code": 50001}, status=403)
        if not self._mentions_off("create", body, needs_content=True):
            return invalid()
        content = body.get("content") or ""
        if len(content) > MAX_CONTENT:
            return self._too_long("create")
        kind = "followup" if webhook else "create"
        if not self._flags_allowed(kind, kind, body):
            return invalid()
        ephemeral = bool(int(body.get("flags") or 0) & EPHEMERAL)
        if not ephemeral and (limited := self._spend(call, channel_id)) is not None:
            return limited
        message = self._new_message(channel_id, self.users[self.bot_id], content)
        message["components"] = body.get("components", [])
        message["flags"] = int(body.get("flags") or 0)
        if webhook:
            message["webhook_id"] = self.application_id
        if "message_reference" in body:
            message["type"] = 19
            message["message_reference"] = {**body["message_reference"], "type": 0}
        self.messages[message["id"]] = message
        self._written(kind, message, body)
        return self._with_budget_headers(json_response(message), channel_id)

    def _edit(self, call: RestCall, message_id: str) -> web.Response:
        body: dict[str, Any] = call.body
        message = self.messages[message_id]
        if not self._mentions_off("edit", body, needs_content="content" in body):
            return invalid()
        if len(body.get("content") or "") > MAX_CONTENT:
            return self._too_long("edit")
        if not self._flags_allowed("edit", "edit", body, already=message["flags"]):
            return invalid()
        channel_id = message["channel_id"]
        if (
            not message["flags"] & EPHEMERAL
            and (limited := self._spend(call, channel_id)) is not None
        ):
            return limited
        if "content" in body:
            message["content"] = body["content"] or ""
        if "components" in body:
            message["components"] = body["components"] or []
        if body.get("flags") is not None:
            editable = SETTABLE_FLAGS["edit"]
            message["flags"] = message["flags"] & ~editable | int(body["flags"]) & editable
        self._written("edit", message, body)
        message["loading"] = False
        message["edits"] = message.get("edits", 0) + 1
        message["edited_timestamp"] = TIMESTAMP
        return self._with_budget_headers(json_response(message), channel_id)

    def _thread(
        self, channel_id: str, message_id: str | None, body: dict[str, Any]
    ) -> web.Response:
        """A thread started from a message (with that message's id) or, without one, a new
        thread in a text channel (public unless the body asks for type 12)."""
        parent = self.channels.get(channel_id)
        if parent is None:
            return unknown("Unknown Channel", 10003)
        if parent["type"] not in (0, 5):  # text and announcement channels only
            return json_response(
                {"message": "Cannot execute action on this channel type", "code": 50024},
                status=400,
            )
        if message_id is not None:
            message = self.messages.get(message_id)
            if message is None or message["channel_id"] != channel_id:
                return unknown("Unknown Message", 10008)
            if message_id in self.channels:
                return json_response(
                    {
                        "message": "A thread has already been created for this message",
                        "code": 160004,
                    },
                    status=400,
                )
        thread_id = message_id or snowflake()
        archive_minutes = body.get("auto_archive_duration", DEFAULT_ARCHIVE_MINUTES)
        thread = payloads.thread(thread_id, parent, self.bot_id, body["name"], archive_minutes)
        if message_id is None and body.get("type") == 12:
            thread["type"] = 12
        self.channels[thread_id] = thread
        asyncio.get_running_loop().create_task(
            self._dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        )
        return json_response(thread, status=201)

    # -- Discord's rules, applied ---------------------------------------------------------------

    def _bot_can_post(self, channel_id: str) -> bool:
        """A DM of other people, or a server the bot never joined: only an interaction's
        response can show anything there."""
        guild = self.guilds.get(self.channels[channel_id].get("guild_id") or "")
        return guild is not None and guild.bot_member

    def _expired(self, call: RestCall, interaction: Interaction) -> web.Response | None:
        """The 401 Discord answers a write through an interaction token past its lifetime (15
        minutes), or None. The bot must never send one: what it says would be lost."""
        if self.clock() - interaction.created_at <= self.token_lifetime:
            return None
        self.expired_writes += 1
        self.violations.append(
            f"{call.method} /{'/'.join(call.parts[:2])}/…: interaction {interaction.id}'s "
            "token had expired"
        )
        return json_response({"message": "Invalid Webhook Token", "code": 50027}, status=401)

    def _mentions_off(self, what: str, body: dict[str, Any], *, needs_content: bool) -> bool:
        problem = mentions_problem(what, body, needs_content=needs_content)
        if problem is not None:
            self.violations.append(problem)
        return problem is None

    def _flags_allowed(
        self, what: str, kind: str, body: dict[str, Any], *, already: int = 0
    ) -> bool:
        problem = flags_problem(what, kind, int(body.get("flags") or 0), already=already)
        if problem is not None:
            self.violations.append(problem)
        return problem is None

    def _written(self, kind: str, message: dict[str, Any], body: dict[str, Any]) -> None:
        """Record the write, then preview the message's links as Discord's crawler would: it
        fetches each new one unless the message suppresses embeds, which also drops previews."""
        self.writes.append(
            MessageWrite(kind, message["id"], body.get("content"), body.get("flags"))
        )
        if message["flags"] & SUPPRESS_EMBEDS:
            message["embeds"] = []
            return
        shown = {embed["url"] for embed in message["embeds"]}
        for url in previewed_links(message["content"]):
            if url not in shown:
                shown.add(url)
                self.crawled.append(url)
                message["embeds"].append({"type": "link", "url": url})

    def _too_long(self, what: str) -> web.Response:
        self.violations.append(f"{what}: content over {MAX_CONTENT} characters")
        return invalid()

    def _spend(self, call: RestCall, channel_id: str) -> web.Response | None:
        """Discord's per-channel create/edit budget: None if allowed, else the 429 response."""
        retry_after = self.budget.spend(channel_id)
        self.on_spend(call, channel_id, retry_after)
        if retry_after is None:
            return None
        self.rate_limited += 1
        return self.budget.limited(channel_id, retry_after)

    def on_spend(self, call: RestCall, channel_id: str, retry_after: float | None) -> None:
        """Called as `call` is charged to `channel_id`'s budget: `retry_after` is None if the
        write goes through, else the seconds its 429 says to wait. Does nothing here."""

    def _with_budget_headers(self, response: web.Response, channel_id: str) -> web.Response:
        if self.advertise_budget:
            response.headers.update(self.budget.headers(channel_id))
        return response


def _callback_result(
    interaction: Interaction, kind: int, message: dict[str, Any] | None
) -> dict[str, Any]:
    """An interaction callback's response body, asked for with `with_response`."""
    result: dict[str, Any] = {
        "interaction": {
            "id": interaction.id,
            "type": interaction.type,
            "response_message_id": message["id"] if message else None,
            "response_message_loading": kind == 5,
            "response_message_ephemeral": bool(message and message["flags"] & EPHEMERAL),
        },
        "resource": {"type": kind},
    }
    if message is not None:
        result["resource"]["message"] = message
    return result
