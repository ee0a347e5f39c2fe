"""The benchmark's Slack: the loopback fake Slack from tests/ in a process of its own, one
workspace with the bot installed, and a driver that mentions the bot in C new threads at once and
records every message the bot writes into them.

    python -m bench.e2e.slack_platform --port 0 --conversations C [--speedup 10] [--check-spec]

Slack's limits run S times faster (chat.update 50 per 60/S s per workspace, chat.postMessage 1
per 1/S s per channel) and the env it hands the bot scales the bot's budgets the same way, so a
run takes 1/S of the time it would on Slack while every limit binds as it does there. Ten
conversations share a channel. The control routes (see `bench.e2e.common`) are served on
`--port`; the fake Web API on a port of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from bench.e2e.common import Conversation, question_text, shows_answer
from bench.e2e.procs import until_signalled
from bot.streaming.editor import MARKER
from tests.fakes.slack import SIGNING_SECRET, FakeSlack, Team
from tests.fakes.slack.markdown import written

TEAM = "T1"
USER = "U0ASKER"
CONVERSATIONS_PER_CHANNEL = 10
UPDATE_LIMIT = (50, 60.0)  # Slack's chat.update: per workspace
POST_LIMIT = (1, 1.0)  # Slack's chat.postMessage: per channel
DEFAULT_SPEEDUP = 10.0
HEALTH_POLL = 0.2  # seconds between checks that the bot is serving
# Once every answer shows its final text, writes still on their way (the naive bot's last edit
# repeats its last interim one) are counted until the bot has been quiet this long.
QUIET = 0.5
LINGER_MAX = 3.0
# Separators tried when an answer spans several messages: the editor may keep or drop the space
# at a split, and either way the reader sees the whole text.
JOINS = ("", " ", "\n")
WRITES = ("chat.postMessage", "chat.update")


@dataclass
class _Thread:
    """One conversation while the run lasts: the bot's messages in its thread, in post order."""

    conversation: Conversation
    channel: str
    thread_ts: str
    texts: dict[str, str] = field(default_factory=dict)  # bot message ts -> text shown now

    def state(self) -> tuple[bool, bool]:
        """(shows some of the answer, shows all of it exactly)."""
        qid = self.conversation.qid
        some, full = False, False
        for sep in JOINS if len(self.texts) > 1 else JOINS[:1]:
            part, whole = shows_answer(sep.join(self.texts.values()), qid)
            some, full = some or part, full or whole
        return some, full

    @property
    def settled(self) -> bool:
        # The bot marks an answer still being written; the naive bot has no marker, and its
        # full text only ever comes with its last edit.
        return not any(MARKER in text for text in self.texts.values())


class BenchSlack(FakeSlack):
    """The fake Slack with its limits scaled, spec checks optional, and every write recorded."""

    def __init__(self, speedup: float, *, check_spec: bool) -> None:
        self.speedup = speedup
        self.update_limit = (UPDATE_LIMIT[0], UPDATE_LIMIT[1] / speedup)
        self.post_limit = (POST_LIMIT[0], POST_LIMIT[1] / speedup)
        # The spec checks parse every call: CPU the bench can spare. Recording every call's
        # arguments and waking waiters on each is for tests; a run of hundreds of answers needs
        # neither. Every question goes out at once: aiohttp's default pool of 100 connections
        # would queue the rest and add that wait to their ack latency.
        super().__init__(
            update_limit=self.update_limit,
            post_limit=self.post_limit,
            check_spec=check_spec,
            record_calls=False,
            connection_limit=0,
        )
        self.team: Team = self.add_team(TEAM)
        self.add_user(TEAM, USER)
        self._reset()

    def _reset(self) -> None:
        self.by_thread: dict[tuple[str, str], _Thread] = {}
        self.by_message: dict[tuple[str, str], _Thread] = {}
        self.accepted: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()
        self.rate_limited = 0
        self.refused: Counter[str] = Counter()  # 429s per budget key
        self.unattributed = 0
        self.last_seen = 0.0  # when the platform last saw any write
        self.pending: set[int] = set()
        self.all_done = asyncio.Event()

    # -- budgets --------------------------------------------------------------------------------

    def edit_key(self) -> str:
        return f"slack:{TEAM}:update"

    def post_key(self, channel: str) -> str:
        return f"slack:{TEAM}:{channel}:post"

    def budgets(self, channels: list[str]) -> dict[str, list[float]]:
        found = {self.edit_key(): list(self.update_limit)}
        found.update({self.post_key(c): list(self.post_limit) for c in channels})
        return found

    def env(self, bot: str) -> dict[str, str]:
        env = {
            "SLACK_BOT_TOKEN": self.team.token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": self.api_url,
            "SLACK_APP_TOKEN": "",  # HTTP mode: events come signed to /slack/events
            # The bench's few people ask far more than a person may per minute: it measures
            # the platform's budgets, not the question limits.
            "QUESTIONS_PER_MINUTE_PER_USER": "0",
            "QUESTIONS_PER_MINUTE_PER_WORKSPACE": "0",
        }
        if bot == "naive":
            env["BENCH_SPEEDUP"] = str(self.speedup)
        else:
            env.update(
                SLACK_UPDATE_RATE=str(self.update_limit[0]),
                SLACK_UPDATE_WINDOW=str(self.update_limit[1]),
                SLACK_POST_RATE=str(self.post_limit[0]),
                SLACK_POST_WINDOW=str(self.post_limit[1]),
            )
        return env

    # -- the Web API, observed ------------------------------------------------------------------

    def on_call(self, method: str, args: dict[str, Any], status: int, body: dict[str, Any]) -> None:
        if method in WRITES:
            self._observe(method, args, status, body)

    def _observe(
        self, method: str, args: dict[str, Any], status: int, body: dict[str, Any]
    ) -> None:
        now = self.last_seen = time.monotonic()
        channel = str(args.get("channel"))
        if method == "chat.postMessage":
            key = self.post_key(channel)
            thread = self.by_thread.get((channel, str(args.get("thread_ts"))))
        else:
            key = self.edit_key()
            thread = self.by_message.get((channel, str(args.get("ts"))))
        self.attempts[key] += 1
        if status == 429:
            self.rate_limited += 1
            self.refused[key] += 1
            if thread is not None:
                extra = thread.conversation.extra
                extra["rate_limited"] = extra.get("rate_limited", 0) + 1
            return
        if not body.get("ok"):
            if thread is not None:
                thread.conversation.extra.setdefault("errors", []).append(body.get("error"))
            return
        self.accepted[key] += 1
        if thread is None:
            self.unattributed += 1
            return
        ts = str(body["ts"])
        if method == "chat.postMessage":
            self.by_message[(channel, ts)] = thread
        thread.texts[ts] = written(args)  # Markdown, mrkdwn or blocks
        self._written(thread, method, now)

    def _written(self, thread: _Thread, method: str, now: float) -> None:
        conv = thread.conversation
        conv.writes += 1
        conv.last_write = now
        some, full = thread.state()
        if some and conv.first_visible is None:
            conv.first_visible = now
            conv.extra["first_visible_by"] = method  # a placeholder that already had text?
        if full and conv.final is None:
            conv.final = now
        elif not full:
            conv.final = None  # a later write took text away: not final after all
        if full and thread.settled:
            self.pending.discard(conv.qid)
            if not self.pending:
                self.all_done.set()

    # -- the run --------------------------------------------------------------------------------

    def channel_ids(self, conversations: int) -> list[str]:
        count = math.ceil(conversations / CONVERSATIONS_PER_CHANNEL)
        return [f"C{n + 1:08d}" for n in range(count)]

    async def run(self, bot_url: str, conversations: int, deadline: float) -> dict[str, Any]:
        self._reset()
        self.bot_url = bot_url.rstrip("/")
        await self._wait_serving(deadline)
        channels = self.channel_ids(conversations)
        envelopes: list[tuple[_Thread, dict[str, Any]]] = []
        for qid in range(conversations):
            channel = channels[qid // CONVERSATIONS_PER_CHANNEL]
            text = f"<@{self.team.bot_user_id}> {question_text(qid)}"
            message = self.user_says(TEAM, channel, USER, text)
            conv = Conversation(
                qid=qid,
                asked=0.0,
                post_key=self.post_key(channel),
                edit_key=self.edit_key(),
            )
            thread = _Thread(conv, channel, message.ts)
            self.by_thread[(channel, message.ts)] = thread
            event = {
                "type": "app_mention",
                "user": USER,
                "text": text,
                "ts": message.ts,
                "channel": channel,
                "event_ts": message.ts,
                "team": TEAM,
            }
            envelopes.append((thread, self.envelope(TEAM, event)))
        self.pending = set(range(conversations))
        started = time.monotonic()
        await asyncio.gather(*(self._ask(thread, envelope) for thread, envelope in envelopes))
        remaining = started + deadline - time.monotonic()
        if self.pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.all_done.wait(), max(0.0, remaining))
        ended = time.monotonic()
        # What shows at the deadline is what counts; an answer completed later was not delivered.
        exact = {thread.conversation.qid: thread.state()[1] for thread, _ in envelopes}
        finals = {thread.conversation.qid: thread.conversation.final for thread, _ in envelopes}
        while time.monotonic() < ended + LINGER_MAX and time.monotonic() < self.last_seen + QUIET:
            await asyncio.sleep(QUIET / 5)
        result = []
        for thread, _ in envelopes:
            conv = thread.conversation
            conv.exact = exact[conv.qid]
            conv.final = finals[conv.qid] if conv.exact else None
            result.append(conv.to_json())
        return {
            "conversations": result,
            "calls": dict(self.accepted),
            "attempts": dict(self.attempts),
            "budgets": self.budgets(channels),
            "rate_limited": self.rate_limited,
            "rate_limited_by_key": dict(self.refused),
            "early": len(self.early_calls),
            "unattributed": self.unattributed,
            "violations": list(self.violations),
            "started": started,
            "ended": ended,
        }

    async def _ask(self, thread: _Thread, envelope: dict[str, Any]) -> None:
        conv = thread.conversation
        conv.asked = time.monotonic()
        try:
            response = await self.deliver(envelope)
        except aiohttp.ClientError as error:
            conv.extra["ack_error"] = type(error).__name__
            return
        conv.acked = time.monotonic()
        if response.status != 200:
            conv.extra["ack_status"] = response.status

    async def _wait_serving(self, deadline: float) -> None:
        """The runner waits for /healthz too; this keeps a hand-started run honest."""
        session = self.session
        assert session is not None
        until = time.monotonic() + deadline
        while time.monotonic() < until:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{self.bot_url}/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(HEALTH_POLL)
        raise RuntimeError(f"the bot at {self.bot_url} never answered /healthz")


class Control:
    """The routes the runner drives: the bot's env, and one run."""

    def __init__(self, slack: BenchSlack, conversations: int) -> None:
        self.slack = slack
        self.conversations = conversations
        self._lock = asyncio.Lock()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/bench/env", self._env)
        app.router.add_post("/bench/run", self._run)
        return app

    async def _env(self, request: web.Request) -> web.Response:
        bot = request.query.get("bot", "answerbot")
        if bot not in ("answerbot", "naive"):
            raise web.HTTPBadRequest(text=f"unknown bot {bot!r}: answerbot or naive")
        return web.json_response(self.slack.env(bot))

    async def _run(self, request: web.Request) -> web.Response:
        body = await request.json()
        bot_url = body.get("bot_url")
        if not bot_url:
            raise web.HTTPBadRequest(text="bot_url: Slack posts its events to the bot")
        async with self._lock:  # one run at a time: the records are the platform's
            result = await self.slack.run(bot_url, self.conversations, float(body["deadline"]))
        return web.json_response(result)


async def serve(host: str, port: int, slack: FakeSlack, control: web.Application) -> None:
    """Run `slack` and the orchestrator's `control` routes (printing where) until signalled."""
    await slack.start()
    runner = web.AppRunner(control, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound_host, bound_port = runner.addresses[0][:2]
    print(f"BENCH_PLATFORM_URL=http://{bound_host}:{bound_port}", flush=True)
    try:
        await until_signalled()
    finally:
        await runner.cleanup()
        await slack.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--conversations", type=int, required=True)
    parser.add_argument("--speedup", type=float, default=DEFAULT_SPEEDUP)
    parser.add_argument("--check-spec", action="store_true", help="check calls against the spec")
    args = parser.parse_args()

    async def run() -> None:
        slack = BenchSlack(args.speedup, check_spec=args.check_spec)
        await serve(args.host, args.port, slack, Control(slack, args.conversations).app())

    asyncio.run(run())


if __name__ == "__main__":
    main()
