"""The benchmark's Discord: the loopback fake Discord from tests/ in its own process, a driver that
sends every `/ask` at once, and a record of each write the bot makes for each conversation.

    python -m bench.e2e.discord_platform --port 0 --conversations C [--speedup S] [--check-spec]

One server with one member; ten conversations per text channel, so answers share Discord's
per-channel create/edit budget (5 per 5/S s) the way a busy channel does. It speaks the platform
process contract in `bench/e2e/common.py`, on one port with the fake's REST API and gateway, plus
`GET /bench/ready` (answers once the bot has identified and synced /ask). Discord's global limit
(50 requests a second per bot, a 429 with `"global": true`) is modelled too; interaction
callbacks and interaction webhooks are exempt from it, as on Discord, so an `/ask` answer only
meets it if the bot writes to channels directly. "early" counts calls on a channel before a
Retry-After given there had passed; "early_own" only those by the conversation that was given it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import re
import time
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from bench.e2e import common
from bench.e2e.common import Conversation
from bench.e2e.procs import until_signalled
from tests.fakes.discord import API_PREFIX, FakeDiscord, Interaction, payloads
from tests.fakes.discord.payloads import MEMBER_PERMISSIONS

CONVERSATIONS_PER_CHANNEL = 10
BUDGET_RATE, BUDGET_WINDOW = 5, 5.0  # Discord's per-channel message create/edit limit
GLOBAL_RATE, GLOBAL_WINDOW = 50, 1.0  # Discord's global limit per bot
CONNECT_TIMEOUT = 60.0  # seconds for the bot to identify and sync its commands
SETTLE_SECONDS = 1.0  # after every answer is final: quiet this long catches trailing writes
DEFAULT_DEADLINE = 120.0
NOT_CONNECTED = "the bot did not identify and sync /ask in time"
DEFERRED = 5  # interaction callback type: "thinking…", the response comes later
SNOWFLAKE_FLOOR = 10**17  # random ids stay snowflake-sized
JOINS = ("", " ", "\n")  # separators tried between an answer's messages
ANSWER_TAG = re.compile(r"\bAnswer(\d+)\b")  # how every scripted answer starts (common.py)


class _NoSpecCheck:
    """Stands in for the fake's spec checker when the bench doesn't pay for checking."""

    def __init__(self) -> None:
        self.tolerated: list[str] = []

    def check(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        return None


class _Record:
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


def budget_key(channel_id: str) -> str:
    """The bucket the fake charges a message create/edit to (named as the bot names it)."""
    return f"discord:channel:{channel_id}"


class BenchDiscord(FakeDiscord):
    """The tests' fake Discord plus the bench's bookkeeping: which conversation every write is
    for, when it landed, 429s and calls made before a Retry-After had passed."""

    def __init__(self, conversations: int, *, speedup: float = 1.0, check_spec: bool = False):
        super().__init__(budget_rate=BUDGET_RATE, budget_window=BUDGET_WINDOW / speedup)
        if not check_spec:
            self._spec = _NoSpecCheck()  # type: ignore[assignment]
        # A fresh application id per run: a bot reusing a DATA_DIR still syncs its commands here.
        users = self.users.pop(self.bot_id)
        self.application_id = self.bot_id = str(
            random.randrange(SNOWFLAKE_FLOOR, 2 * SNOWFLAKE_FLOOR)
        )
        self.users[self.bot_id] = {**users, "id": self.bot_id}
        self.speedup = speedup
        self.check_spec = check_spec
        self.member = self.add_user("bench-member")
        self.guild_id, first = self.add_guild("bench", {self.member: MEMBER_PERMISSIONS})
        self.channel_ids = [first]
        for n in range(1, math.ceil(conversations / CONVERSATIONS_PER_CHANNEL)):
            channel_id = str(SNOWFLAKE_FLOOR + n)
            self.channels[channel_id] = payloads.text_channel(
                channel_id, self.guild_id, f"bench-{n}"
            )
            self.guilds[self.guild_id].channel_ids.append(channel_id)
            self.channel_ids.append(channel_id)
        self.conversations = conversations
        self.records: dict[int, _Record] = {}
        self._by_interaction: dict[str, _Record] = {}
        self._by_message: dict[str, _Record] = {}
        self._tokens: dict[str, Interaction] = {}
        self.calls: Counter[str] = Counter()
        self.early = 0
        self.early_own = 0
        self.global_limited = 0
        self.unattributed = 0
        self.late_acks = 0
        self._blocked_until: dict[str, float] = {}
        self._global: deque[float] = deque()
        self.global_window = GLOBAL_WINDOW / speedup
        self.last_write = 0.0
        self._routing: list[str] = [""]

    # -- serving --------------------------------------------------------------------------------

    async def serve(self, port: int) -> int:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest)
        app.router.add_get("/bench/env", self._env)
        app.router.add_post("/bench/run", self._run)
        app.router.add_get("/bench/ready", self._ready)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self.port

    async def _env(self, request: web.Request) -> web.Response:
        env = {
            "DISCORD_TOKEN": self.token,
            "DISCORD_API_URL": self.api_url,
            "DISCORD_GATEWAY_URL": self.gateway_url,
            "DISCORD_GUILD_IDS": self.guild_id,
            "DISCORD_EDIT_RATE": str(BUDGET_RATE),
            "DISCORD_EDIT_WINDOW": str(self.budget_window),
        }
        return web.json_response(env)

    async def _ready(self, request: web.Request) -> web.Response:
        """Answers once the bot has identified and synced /ask (503 if it doesn't in time), so a
        runner can start measuring the bot after its start-up rather than across it."""
        if not await self._wait_connected():
            return web.json_response({"error": NOT_CONNECTED}, status=503)
        return web.json_response({"ready": True})

    async def _run(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        deadline = float(body.get("deadline") or DEFAULT_DEADLINE)
        if not await self._wait_connected():
            return web.json_response({"error": NOT_CONNECTED}, status=503)
        return web.json_response(await self.run(deadline))

    async def _wait_connected(self) -> bool:
        try:
            await self.wait_for(self._connected, timeout=CONNECT_TIMEOUT)
        except TimeoutError:
            return False
        return True

    def _connected(self) -> bool:
        return self.ready.is_set() and any(
            c["name"] == "ask" for c in self._visible_commands(self.guild_id)
        )

    # -- the run --------------------------------------------------------------------------------

    async def run(self, deadline: float) -> dict[str, Any]:
        started = time.monotonic()
        for qid in range(self.conversations):
            channel_id = self.channel_ids[qid // CONVERSATIONS_PER_CHANNEL]
            self.records[qid] = _Record(qid, channel_id)
            question = common.question_text(qid)
            await self.slash(self.guild_id, channel_id, self.member, "ask", question=question)
        with contextlib.suppress(TimeoutError):
            await self.wait_for(self._all_final, timeout=max(deadline - self._since(started), 0))
            # Trailing writes (buttons, sources) land after the exact text: wait for quiet.
            settle = SETTLE_SECONDS / self.speedup
            while (quiet := time.monotonic() - self.last_write) < settle:
                if self._since(started) + settle - quiet > deadline:
                    break
                await asyncio.sleep(settle - quiet)
        return self.result(started, time.monotonic())

    @staticmethod
    def _since(started: float) -> float:
        return time.monotonic() - started

    def _all_final(self) -> bool:
        return all(r.conversation.exact for r in self.records.values())

    def result(self, started: float, ended: float) -> dict[str, Any]:
        conversations = []
        for record in self.records.values():
            record.conversation.extra.update(
                rate_limited=record.rate_limited,
                early=record.early,
                early_own=record.early_own,
                messages=len(record.message_ids),
                write_times=record.write_times,
                limited_times=record.limited_times,
            )
            conversations.append(record.conversation.to_json())
        result: dict[str, Any] = {
            "conversations": conversations,
            "calls": dict(self.calls),
            "budgets": {
                budget_key(c): [self.budget_rate, self.budget_window] for c in self.channel_ids
            },
            "rate_limited": self.rate_limited,
            "early": self.early,
            "early_own": self.early_own,
            "started": started,
            "ended": ended,
            "global_rate_limited": self.global_limited,
            "global_budget": [GLOBAL_RATE, self.global_window],
            "unattributed_writes": self.unattributed,
            "late_acks": self.late_acks,
        }
        if self.check_spec:
            result["violations"] = list(self.violations)
        return result

    # -- hooks into the fake --------------------------------------------------------------------

    async def _dispatch(self, event: str, data: dict[str, Any]) -> None:
        await super()._dispatch(event, data)
        if event == "INTERACTION_CREATE":
            options = data["data"].get("options") or [{}]
            qid = common.question_id(str(options[0].get("value", "")))
            record = self.records.get(qid) if qid is not None else None
            if record is not None:
                record.conversation.asked = time.monotonic()
                self._by_interaction[data["id"]] = record
                self._tokens[data["token"]] = self.interactions[data["id"]]

    def _by_token(self, token: str) -> Interaction | None:
        return self._tokens.get(token) or super()._by_token(token)

    async def _rest(self, request: web.Request) -> web.Response:
        path = request.match_info["tail"]
        if not path.startswith(("interactions/", "webhooks/")):
            limited = self._spend_global()
            if limited is not None:
                return limited
        return await super()._rest(request)

    def _route(
        self, method: str, parts: list[str], query: dict[str, str], body: Any
    ) -> web.Response:
        self._routing = parts  # _route runs without a pause, so this is the call _spend charges
        response = super()._route(method, parts, query, body)
        if response.status < 300:
            self._note(method, parts, response)
        return response

    def _note(self, method: str, parts: list[str], response: web.Response) -> None:
        """Attribute a successful call to its conversation and update that conversation."""
        now = time.monotonic()
        record: _Record | None = None
        created: dict[str, Any] | None = None
        match (method, parts):
            case ("POST", ["interactions", interaction_id, _, "callback"]):
                record = self._by_interaction.get(interaction_id)
                if record is not None:
                    record.conversation.acked = now
                    original = self.interactions[interaction_id].original_id
                    if original is not None:
                        self._claim(record, original)
                    if self.interactions[interaction_id].callbacks[-1]["type"] == DEFERRED:
                        return  # no text yet: not a write
            case ("PATCH", ["webhooks", _, token, "messages", _]) | (
                "POST",
                ["webhooks", _, token],
            ):
                interaction = self._by_token(token)
                record = self._by_interaction.get(interaction.id) if interaction else None
                created = _body(response) if method == "POST" else None
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

    def _claim(self, record: _Record, message_id: str) -> None:
        if message_id not in self._by_message:
            self._by_message[message_id] = record
            record.message_ids.append(message_id)

    def _update(self, record: _Record, now: float) -> None:
        conversation = record.conversation
        conversation.writes += 1
        record.write_times.append(now)
        conversation.last_write = now
        texts = [self.messages[m]["content"] for m in record.message_ids]
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

    def _callback(
        self, interaction_id: str, token: str, query: dict[str, str], body: dict[str, Any]
    ) -> web.Response:
        response = super()._callback(interaction_id, token, query, body)
        if response.status == 404 and interaction_id in self._by_interaction:
            self.late_acks += 1
        return response

    def _spend(self, channel_id: str) -> web.Response | None:
        key = budget_key(channel_id)
        record = self._record_writing()
        now = self._clock()
        if now < self._blocked_until.get(key, 0.0):
            self.early += 1
            if record is not None:
                record.early += 1
        if record is not None and now < record.blocked_until:
            record.early_own += 1
            self.early_own += 1
        limited = super()._spend(channel_id)
        if limited is None:
            self.calls[key] += 1
            return None
        retry_after = float(_body(limited)["retry_after"])
        self._blocked_until[key] = max(self._blocked_until.get(key, 0.0), now + retry_after)
        if record is not None:
            record.blocked_until = max(record.blocked_until, now + retry_after)
            record.rate_limited += 1
            record.limited_times.append(now)
        return limited

    def _record_writing(self) -> _Record | None:
        """The conversation of the call being routed, if it is a write to a known message."""
        parts = self._routing
        if parts[0] == "webhooks" and len(parts) >= 3:
            interaction = self._by_token(parts[2])
            return self._by_interaction.get(interaction.id) if interaction else None
        if parts[0] == "channels" and len(parts) == 4:
            return self._by_message.get(parts[3])
        return None

    def _spend_global(self) -> web.Response | None:
        """Discord's global limit on everything but interaction endpoints."""
        now = self._clock()
        if now < self._blocked_until.get("global", 0.0):
            self.early += 1
        while self._global and self._global[0] <= now - self.global_window:
            self._global.popleft()
        if len(self._global) < GLOBAL_RATE:
            self._global.append(now)
            return None
        self.global_limited += 1
        self.rate_limited += 1
        retry_after = round(self._global[0] + self.global_window - now, 3)
        self._blocked_until["global"] = max(
            self._blocked_until.get("global", 0.0), now + retry_after
        )
        response = web.json_response(
            {"message": "You are being rate limited.", "retry_after": retry_after, "global": True},
            status=429,
        )
        response.headers.update(
            {
                "Retry-After": str(max(1, math.ceil(retry_after))),
                "X-RateLimit-Global": "true",
                "X-RateLimit-Scope": "global",
            }
        )
        return response


def _body(response: web.Response) -> dict[str, Any]:
    assert isinstance(response.body, bytes)
    data: dict[str, Any] = json.loads(response.body)
    return data


def _answer_tag(text: str) -> int | None:
    found = ANSWER_TAG.search(text)
    return int(found.group(1)) if found else None


async def serve(args: argparse.Namespace) -> None:
    fake = BenchDiscord(args.conversations, speedup=args.speedup, check_spec=args.check_spec)
    port = await fake.serve(args.port)
    print(f"BENCH_PLATFORM_URL=http://127.0.0.1:{port}", flush=True)
    try:
        await until_signalled()
    finally:
        await fake.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--conversations", type=int, required=True)
    parser.add_argument("--speedup", type=float, default=1.0, help="divide rate windows by this")
    parser.add_argument("--check-spec", action="store_true", help="check requests against the spec")
    args = parser.parse_args(argv)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
