"""The scale benchmark's Slack: the loopback fake Slack from tests/ in a process of its own, with
many workspaces the bot is installed in through OAuth, and a driver that asks questions at a fixed
rate, hands each event to the next replica in turn (the load balancer) and records what each
question's thread shows.

    python -m bench.scale_slack --port 0 --workspaces 20 [--speedup 10]

Slack's limits bind as in `bench.e2e.slack_platform` (chat.update 50 per 60/S s per workspace,
chat.postMessage 1 per 1/S s per channel, 429 + Retry-After). Control routes on --port:
`GET /bench/env` (what a replica needs: OAuth app, API URL, budgets), `POST /bench/install`
`{"bot_url", "workspaces"}` (those workspaces walk the OAuth install through that replica; the
installation lands in its database, shared by the replicas), `POST /bench/run` `{"bot_urls",
"workspaces", "questions", "rate", "deadline"}` (the run's records: `ScaleSlack.run`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import re
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from bench.e2e.common import Conversation, question_text, shows_answer
from bench.e2e.slack_platform import POST_LIMIT, UPDATE_LIMIT, serve
from bot.streaming.editor import MARKER
from tests.fakes.slack import CLIENT_ID, CLIENT_SECRET, SIGNING_SECRET, FakeSlack
from tests.fakes.slack.markdown import written

USER = "U0ASKER"
CHANNELS_PER_WORKSPACE = 10  # a workspace's questions are spread over its channels in turn
STATE_COOKIE = "slack-app-oauth-state"  # bolt's OAuth state cookie
WRITES = ("chat.postMessage", "chat.update")


def team_id(number: int) -> str:
    return f"T{number + 1:03d}"


@dataclass
class _Thread:
    """One question while the run lasts: the bot's messages in its thread, by ts."""

    conversation: Conversation
    replica: int
    texts: dict[str, str] = field(default_factory=dict)

    def state(self) -> tuple[bool, bool]:
        """(shows some of the answer, shows all of it and is no longer being written)."""
        text = "".join(self.texts.values())
        some, full = shows_answer(text, self.conversation.qid)
        return some, full and MARKER not in text


class ScaleSlack(FakeSlack):
    """The fake Slack with W workspaces, limits scaled by `speedup`, every write observed."""

    def __init__(self, workspaces: int, speedup: float) -> None:
        self.speedup = speedup
        self.update_limit = (UPDATE_LIMIT[0], UPDATE_LIMIT[1] / speedup)
        self.post_limit = (POST_LIMIT[0], POST_LIMIT[1] / speedup)
        # No spec checks or call records: a run makes thousands of calls (as the e2e bench).
        super().__init__(
            update_limit=self.update_limit,
            post_limit=self.post_limit,
            check_spec=False,
            record_calls=False,
            connection_limit=0,
        )
        self.team_ids = [team_id(n) for n in range(workspaces)]
        for team in self.team_ids:
            self.add_team(team)
            self.add_user(team, USER)
        self.qids = itertools.count()
        self._reset()

    def _reset(self) -> None:
        self.by_thread: dict[tuple[str, str], _Thread] = {}
        self.by_message: dict[tuple[str, str], _Thread] = {}
        self.rate_limited: dict[str, int] = {}
        self.pending: set[int] = set()
        self.all_done = asyncio.Event()

    def env(self) -> dict[str, str]:
        return {
            "SLACK_CLIENT_ID": CLIENT_ID,
            "SLACK_CLIENT_SECRET": CLIENT_SECRET,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": self.api_url,
            "SLACK_APP_TOKEN": "",  # HTTP mode: events come signed to /slack/events
            "SLACK_UPDATE_RATE": str(self.update_limit[0]),
            "SLACK_UPDATE_WINDOW": str(self.update_limit[1]),
            "SLACK_POST_RATE": str(self.post_limit[0]),
            "SLACK_POST_WINDOW": str(self.post_limit[1]),
            # One asker per workspace asks far more than a person may: the bench measures the
            # platform's budgets and the replicas, not the question limits.
            "QUESTIONS_PER_MINUTE_PER_USER": "0",
            "QUESTIONS_PER_MINUTE_PER_WORKSPACE": "0",
        }

    # -- installs -------------------------------------------------------------------------------

    async def install(self, bot_url: str, workspaces: int) -> None:
        """The first `workspaces` workspaces go through /slack/install and back, as a person's
        browser would (again: a reinstall replaces the installation)."""
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as browser:
            for team in self.team_ids[:workspaces]:
                async with browser.get(f"{bot_url}/slack/install") as page:
                    page.raise_for_status()
                    html = await page.text()
                    cookie = page.cookies[STATE_COOKIE].value
                if not re.search(rf"state={re.escape(cookie)}", html):
                    raise RuntimeError("the install page does not carry its state cookie's value")
                async with browser.get(
                    f"{bot_url}/slack/oauth_redirect",
                    params={"code": self.install_code(team), "state": cookie},
                    headers={"Cookie": f"{STATE_COOKIE}={cookie}"},
                ) as finished:
                    if finished.status != 200:
                        raise RuntimeError(f"install of {team}: {await finished.text()}")

    # -- the Web API, observed ------------------------------------------------------------------

    def on_call(self, method: str, args: dict[str, Any], status: int, body: dict[str, Any]) -> None:
        if method not in WRITES:
            return
        channel = str(args.get("channel"))
        if method == "chat.postMessage":
            thread = self.by_thread.get((channel, str(args.get("thread_ts"))))
        else:
            thread = self.by_message.get((channel, str(args.get("ts"))))
        if status == 429:
            self.rate_limited[method] = self.rate_limited.get(method, 0) + 1
            return
        if thread is None or not body.get("ok"):
            return
        ts = str(body["ts"])
        if method == "chat.postMessage":
            self.by_message[(channel, ts)] = thread
        thread.texts[ts] = written(args)  # Markdown, mrkdwn or blocks
        conv, now = thread.conversation, time.monotonic()
        conv.writes += 1
        some, done = thread.state()
        if some and conv.first_visible is None:
            conv.first_visible = now
        if done and conv.final is None:
            conv.final, conv.exact = now, True
            self.pending.discard(conv.qid)
            if not self.pending:
                self.all_done.set()

    # -- the run --------------------------------------------------------------------------------

    async def run(
        self, bot_urls: list[str], workspaces: int, questions: int, rate: float, deadline: float
    ) -> dict[str, Any]:
        """Ask `questions` questions, one every 1/`rate` s, over the first `workspaces`
        workspaces in turn; event i goes to replica i mod R. Waits for every final text or the
        deadline (from the first question)."""
        self._reset()
        teams = self.team_ids[:workspaces]
        early_before = len(self.early_calls)
        threads: list[tuple[_Thread, dict[str, Any]]] = []
        for n in range(questions):
            team = teams[n % len(teams)]
            channel = f"C{team[1:]}{(n // len(teams)) % CHANNELS_PER_WORKSPACE:02d}"
            qid = next(self.qids)
            text = f"<@{self.teams[team].bot_user_id}> {question_text(qid)}"
            message = self.user_says(team, channel, USER, text)
            conv = Conversation(qid=qid, asked=0.0, post_key=channel, edit_key=team)
            thread = _Thread(conv, replica=n % len(bot_urls))
            self.by_thread[(channel, message.ts)] = thread
            self.pending.add(qid)
            event = {
                "type": "app_mention",
                "user": USER,
                "text": text,
                "ts": message.ts,
                "channel": channel,
                "event_ts": message.ts,
                "team": team,
            }
            threads.append((thread, self.envelope(team, event)))
        started = time.monotonic()
        asks = []
        for n, (thread, envelope) in enumerate(threads):
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            asks.append(asyncio.create_task(self._ask(thread, envelope, bot_urls[thread.replica])))
        await asyncio.gather(*asks)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self.all_done.wait(), max(0.0, started + deadline - time.monotonic())
            )
        return {
            "conversations": [
                {
                    **t.conversation.to_json(),
                    "replica": t.replica,
                    # What an unfinished answer's thread shows: a lost answer or a late one?
                    "shown": None if t.conversation.exact else "".join(t.texts.values())[-300:],
                }
                for t, _ in threads
            ],
            "rate_limited": dict(self.rate_limited),
            "retry_after_violations": len(self.early_calls) - early_before,
            "started": started,
            "ended": time.monotonic(),
        }

    async def _ask(self, thread: _Thread, envelope: dict[str, Any], bot_url: str) -> None:
        conv = thread.conversation
        # deliver() reads bot_url before its first await: each task sends to its own replica.
        self.bot_url = bot_url
        conv.asked = time.monotonic()
        try:
            response = await self.deliver(envelope)
        except aiohttp.ClientError as error:
            conv.extra["ack_error"] = type(error).__name__
            return
        conv.acked = time.monotonic()
        if response.status != 200:
            conv.extra["ack_status"] = response.status


def control(slack: ScaleSlack) -> web.Application:
    """The routes the orchestrator (bench/scale.py) drives."""
    lock = asyncio.Lock()  # one run at a time: the records are the platform's

    async def env(request: web.Request) -> web.Response:
        return web.json_response(slack.env())

    async def install(request: web.Request) -> web.Response:
        body = await request.json()
        await slack.install(body["bot_url"], int(body["workspaces"]))
        return web.json_response({"installed": int(body["workspaces"])})

    async def run(request: web.Request) -> web.Response:
        body = await request.json()
        async with lock:
            result = await slack.run(
                list(body["bot_urls"]),
                int(body["workspaces"]),
                int(body["questions"]),
                float(body["rate"]),
                float(body["deadline"]),
            )
        return web.json_response(result)

    app = web.Application()
    app.router.add_get("/bench/env", env)
    app.router.add_post("/bench/install", install)
    app.router.add_post("/bench/run", run)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workspaces", type=int, required=True)
    parser.add_argument("--speedup", type=float, default=10.0)
    args = parser.parse_args()

    async def run() -> None:
        slack = ScaleSlack(args.workspaces, args.speedup)
        await serve(args.host, args.port, slack, control(slack))

    asyncio.run(run())


if __name__ == "__main__":
    main()
