"""The Slack end-to-end rig: the real bolt app on a loopback port, talking to the fake Slack
Web API and (through the core) to the fake OpenAI endpoint."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import SecretStr
from slack_bolt.app.async_app import AsyncApp

from adapters.operations import add_operations_routes
from adapters.slack.app import add_slack_routes, background, build_slack_app
from bot.core import Core
from bot.settings import Settings
from tests.fakes.slack import CLIENT_ID, CLIENT_SECRET, SIGNING_SECRET, FakeSlack

KNOWLEDGE = {
    "vacation.md": (
        "# Vacation policy\n\n"
        "Employees get 25 days of paid vacation per year. Request vacation in the HR portal "
        "at least two weeks ahead; your manager approves it.\n"
    ),
    "expenses.md": (
        "# Expense reports\n\n"
        "Submit expense reports within 30 days with receipts attached. Travel expenses need "
        "a pre-approved trip number.\n"
    ),
}


def write_knowledge(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in KNOWLEDGE.items():
        (folder / name).write_text(text)


def slack_settings(base: Settings, fake: FakeSlack, **overrides: Any) -> Settings:
    """`base` aimed at the fake Slack, one workspace (T1) with a bot token, HTTP mode."""
    values: dict[str, Any] = {
        "slack_api_url": fake.api_url,
        "slack_signing_secret": SecretStr(SIGNING_SECRET),
        "slack_bot_token": SecretStr(fake.teams["T1"].token) if "T1" in fake.teams else None,
        # Fast budgets so tests don't wait on Slack's real windows; the fake enforces its own.
        "slack_post_rate": 5,
        "slack_post_window": 1.0,
        **overrides,
    }
    return base.model_copy(update=values)


def oauth_settings(base: Settings, fake: FakeSlack, **overrides: Any) -> Settings:
    return slack_settings(
        base,
        fake,
        slack_bot_token=None,
        slack_client_id=CLIENT_ID,
        slack_client_secret=SecretStr(CLIENT_SECRET),
        **overrides,
    )


@dataclass
class Bot:
    settings: Settings
    core: Core
    app: AsyncApp
    url: str

    async def idle(self) -> None:
        """Wait until every answer and command the bot started has finished."""
        await background(self.app).idle()


async def open_core(settings: Settings) -> Core:
    write_knowledge(settings.knowledge_dir)
    core = await Core.open(settings)
    await core.knowledge.refresh()
    return core


@asynccontextmanager
async def running_bot(settings: Settings, fake: FakeSlack) -> AsyncIterator[Bot]:
    """A bot process: its own core on the settings' database, serving HTTP on a loopback port
    (Slack's routes and, as `bot run` does, /healthz, /readyz and /metrics)."""
    core = await open_core(settings)
    app = build_slack_app(settings, core)
    web_app = web.Application()
    add_slack_routes(web_app, app)
    add_operations_routes(web_app, core, ["slack (http)"])
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    url = f"http://{host}:{port}"
    fake.bot_url = url
    try:
        yield Bot(settings, core, app, url)
    finally:
        await runner.cleanup()  # runs on_shutdown: drains the answers in flight
        await core.close()


STATE_COOKIE = "slack-app-oauth-state"


async def install(fake: FakeSlack, bot: Bot, team: str) -> None:
    """Walk the browser through /slack/install and back to /slack/oauth_redirect."""
    await install_across(fake, bot.url, bot.url, team)


async def install_across(fake: FakeSlack, start: str, finish: str, team: str) -> None:
    """The same walk with the install page served by the bot at `start` and Slack's redirect
    landing on the one at `finish` (behind a load balancer, two replicas)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as browser:
        async with browser.get(f"{start}/slack/install") as page:
            assert page.status == 200
            html = await page.text()
            cookie = page.cookies[STATE_COOKIE].value
        match = re.search(r"state=([A-Za-z0-9_\-]+)", html)
        assert match is not None and match.group(1) == cookie
        async with browser.get(
            f"{finish}/slack/oauth_redirect",
            params={"code": fake.install_code(team), "state": cookie},
            headers={"Cookie": f"{STATE_COOKIE}={cookie}"},
        ) as done:
            assert done.status == 200, await done.text()
