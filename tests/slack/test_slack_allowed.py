"""SLACK_ALLOWED_TEAMS end to end: an install from a workspace not on the list is refused with a
page saying so and nothing kept; events and commands from one installed before the list was set
get no answer and no model call; team ids and Enterprise Grid org ids both count."""

from __future__ import annotations

import logging
import re

import aiohttp
import pytest
from pydantic import SecretStr

from adapters.slack.allowed import NOT_ALLOWED
from bot.settings import Settings
from tests.fakes.openai import FAKE_KEY, FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.slack.slack_rig import STATE_COOKIE, Bot, install, oauth_settings, running_bot

MEMBER = "UMEMBER"
CHANNEL = "C0GENERAL"
VACATION = "How many vacation days do employees get?"


def setup_slack(fake: FakeSlack) -> None:
    fake.add_team("T1")
    fake.add_team("T2")
    fake.add_team("T3", enterprise_id="E9")
    for team in ("T1", "T2", "T3"):
        fake.add_user(team, MEMBER)


def settings_for(base: Settings, fake: FakeSlack, allowed: list[str]) -> Settings:
    return oauth_settings(
        base, fake, openai_api_key=SecretStr(FAKE_KEY), slack_allowed_teams=allowed
    )


async def try_install(fake: FakeSlack, bot: Bot, team: str) -> tuple[int, str]:
    """The browser's trip through /slack/install and back; the final page's status and text."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as browser:
        async with browser.get(f"{bot.url}/slack/install") as page:
            cookie = page.cookies[STATE_COOKIE].value
            assert re.search(r"state=" + re.escape(cookie), await page.text())
        async with browser.get(
            f"{bot.url}/slack/oauth_redirect",
            params={"code": fake.install_code(team), "state": cookie},
            headers={"Cookie": f"{STATE_COOKIE}={cookie}"},
        ) as done:
            return done.status, await done.text()


async def test_an_install_from_a_workspace_not_listed_is_refused_with_a_page(
    fake_settings: Settings, fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = settings_for(fake_settings, fake_slack, ["T1", "E9"])
    async with running_bot(settings, fake_slack) as bot:
        refused = await try_install(fake_slack, bot, "T2")
        listed = await try_install(fake_slack, bot, "T1")
        in_listed_org = await try_install(fake_slack, bot, "T3")

        store = bot.core.store
        assert refused[0] == 403
        assert "not allowed this Slack workspace (T2)" in refused[1]
        assert await store.get_slack_installation("slack:T2") is None
        assert "Slack install refused for T2: not in SLACK_ALLOWED_TEAMS" in caplog.text
        assert listed[0] == 200 and await store.get_slack_installation("slack:T1") is not None
        assert in_listed_org[0] == 200
        assert await store.get_slack_installation("slack:E9:T3") is not None


async def test_a_workspace_not_listed_gets_no_answer_and_no_model_call(
    fake_settings: Settings,
    fake_slack: FakeSlack,
    fake_openai: FakeOpenAI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Both were installed before the operator set the list.
    async with running_bot(settings_for(fake_settings, fake_slack, []), fake_slack) as bot:
        for team in ("T1", "T2"):
            await install(fake_slack, bot, team)
    caplog.set_level(logging.INFO)

    async with running_bot(settings_for(fake_settings, fake_slack, ["T1"]), fake_slack) as bot:
        asked = await fake_slack.say("T2", CHANNEL, MEMBER, f"<@UBOTT2> {VACATION}")
        command = await fake_slack.command("T2", MEMBER, "")
        ack = await command.text()
        fake_openai.reply("Employees get 25 days [1].")
        answered = await fake_slack.say("T1", "C1", MEMBER, f"<@UBOTT1> {VACATION}")
        await bot.idle()
        await fake_slack.wait_for(
            lambda: any(m.buttons for m in fake_slack.bot_messages("C1", answered.ts))
        )

        assert fake_slack.bot_messages(CHANNEL, asked.ts) == []
        assert command.status == 200 and ack == NOT_ALLOWED
        assert [r.api_key for r in fake_openai.chat_requests] == [FAKE_KEY]  # T1's answer only
        assert not any(c.team == "T2" for c in fake_slack.calls if c.method.startswith("chat."))
        assert "from team T2, not in SLACK_ALLOWED_TEAMS: ignored" in caplog.text
