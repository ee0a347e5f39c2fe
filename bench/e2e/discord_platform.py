"""The benchmark's Discord: the loopback fake Discord from tests/ in its own process, a driver that
sends every `/ask` at once, and a record of each write the bot makes for each conversation.

    python -m bench.e2e.discord_platform --port 0 --conversations C [--speedup S] [--check-spec]

One server with one member; ten conversations per text channel, so answers share Discord's
per-channel create/edit budget (5 per 5/S s) the way a busy channel does. It speaks the platform
process contract in `bench/e2e/common.py`, on one port with the fake's REST API and gateway, plus
`GET /bench/ready` (answers once the bot has identified and synced /ask). Discord's global limit
(50 requests a second per bot, a 429 with `"global": true`) is modelled too; interaction
callbacks and interaction webhooks are exempt from it, as on Discord, so an `/ask` answer only
meets it if the bot writes to channels directly. Which conversation each write is for, and the
calls made before a Retry-After had passed, are kept in `bench/e2e/discord_ledger.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from bench.e2e import common
from bench.e2e.discord_ledger import Ledger, budget_key
from bench.e2e.procs import until_signalled
from tests.fakes.discord import MEMBER_PERMISSIONS, FakeDiscord, RestCall

CONVERSATIONS_PER_CHANNEL = 10
BUDGET_RATE, BUDGET_WINDOW = 5, 5.0  # Discord's per-channel message create/edit limit
GLOBAL_RATE, GLOBAL_WINDOW = 50, 1.0  # Discord's global limit per bot
GLOBAL = "global"  # the global limit's key among the budget keys
CONNECT_TIMEOUT = 60.0  # seconds for the bot to identify and sync its commands
SETTLE_SECONDS = 1.0  # after every answer is final: quiet this long catches trailing writes
DEFAULT_DEADLINE = 120.0
NOT_CONNECTED = "the bot did not identify and sync /ask in time"
SNOWFLAKE_FLOOR = 10**17  # random ids stay snowflake-sized


class BenchDiscord(FakeDiscord):
    """The tests' fake Discord plus the bench's bookkeeping (a Ledger, fed from the fake's hooks)
    and Discord's global limit."""

    def __init__(self, conversations: int, *, speedup: float = 1.0, check_spec: bool = False):
        # A fresh application id per run: a bot reusing a DATA_DIR still syncs its commands here.
        application_id = str(random.randrange(SNOWFLAKE_FLOOR, 2 * SNOWFLAKE_FLOOR))
        super().__init__(
            budget_rate=BUDGET_RATE,
            budget_window=BUDGET_WINDOW / speedup,
            check_spec=check_spec,
            application_id=application_id,
        )
        self.speedup = speedup
        self.member = self.add_user("bench-member")
        self.guild_id, first = self.add_guild("bench", {self.member: MEMBER_PERMISSIONS})
        self.channel_ids = [first]
        for n in range(1, math.ceil(conversations / CONVERSATIONS_PER_CHANNEL)):
            channel_id = str(SNOWFLAKE_FLOOR + n)
            self.channel_ids.append(self.add_channel(self.guild_id, f"bench-{n}", channel_id))
        self.conversations = conversations
        self.ledger = Ledger(self)
        self.global_limited = 0
        self._global: deque[float] = deque()
        self.global_window = GLOBAL_WINDOW / speedup

    # -- serving --------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_get("/bench/env", self._env)
        app.router.add_post("/bench/run", self._run)
        app.router.add_get("/bench/ready", self._ready)
        return app

    async def _env(self, request: web.Request) -> web.Response:
        env = {
            "DISCORD_TOKEN": self.token,
            "DISCORD_API_URL": self.api_url,
            "DISCORD_GATEWAY_URL": self.gateway_url,
            "DISCORD_GUILD_IDS": self.guild_id,
            "DISCORD_EDIT_RATE": str(BUDGET_RATE),
            "DISCORD_EDIT_WINDOW": str(self.budget_window),
            # The bench's few people ask far more than a person may per minute: it measures
            # the platform's budgets, not the question limits.
            "QUESTIONS_PER_MINUTE_PER_USER": "0",
            "QUESTIONS_PER_MINUTE_PER_WORKSPACE": "0",
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
            c["name"] == "ask" for c in self.visible_commands(self.guild_id)
        )

    # -- the run --------------------------------------------------------------------------------

    async def run(self, deadline: float) -> dict[str, Any]:
        started = time.monotonic()
        for qid in range(self.conversations):
            channel_id = self.channel_ids[qid // CONVERSATIONS_PER_CHANNEL]
            record = self.ledger.open(qid, channel_id)
            question = common.question_text(qid)
            interaction = await self.slash(
                self.guild_id, channel_id, self.member, "ask", question=question
            )
            self.ledger.asked(record, interaction)
        with contextlib.suppress(TimeoutError):
            await self.wait_for(self.ledger.all_final, timeout=max(deadline - _since(started), 0))
            # Trailing writes (buttons, sources) land after the exact text: wait for quiet.
            settle = SETTLE_SECONDS / self.speedup
            while (quiet := time.monotonic() - self.ledger.last_write) < settle:
                if _since(started) + settle - quiet > deadline:
                    break
                await asyncio.sleep(settle - quiet)
        return self.result(started, time.monotonic())

    def result(self, started: float, ended: float) -> dict[str, Any]:
        ledger = self.ledger
        result: dict[str, Any] = {
            "conversations": [record.to_json() for record in ledger.records.values()],
            "calls": dict(ledger.calls),
            "budgets": {
                budget_key(c): [self.budget_rate, self.budget_window] for c in self.channel_ids
            },
            "rate_limited": self.rate_limited,
            "early": ledger.early,
            "early_own": ledger.early_own,
            "started": started,
            "ended": ended,
            "global_rate_limited": self.global_limited,
            "global_budget": [GLOBAL_RATE, self.global_window],
            "unattributed_writes": ledger.unattributed,
            "late_acks": ledger.late_acks,
        }
        if self.check_spec:
            result["violations"] = list(self.violations)
        return result

    # -- the fake's hooks -----------------------------------------------------------------------

    def admit(self, method: str, parts: list[str]) -> web.Response | None:
        """Discord's global limit, on everything but interaction endpoints."""
        if parts[0] in ("interactions", "webhooks"):
            return None
        now = self.clock()
        self.ledger.early_call(GLOBAL, now)
        while self._global and self._global[0] <= now - self.global_window:
            self._global.popleft()
        if len(self._global) < GLOBAL_RATE:
            self._global.append(now)
            return None
        self.global_limited += 1
        self.rate_limited += 1
        retry_after = round(self._global[0] + self.global_window - now, 3)
        self.ledger.block(GLOBAL, now + retry_after)
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

    def on_routed(self, call: RestCall, response: web.Response) -> None:
        self.ledger.routed(call, response)

    def on_spend(self, call: RestCall, channel_id: str, retry_after: float | None) -> None:
        self.ledger.spent(call, channel_id, retry_after)


def _since(started: float) -> float:
    return time.monotonic() - started


async def serve(args: argparse.Namespace) -> None:
    fake = BenchDiscord(args.conversations, speedup=args.speedup, check_spec=args.check_spec)
    await fake.start(args.port)
    print(f"BENCH_PLATFORM_URL=http://127.0.0.1:{fake.port}", flush=True)
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
