"""POST /slack/events seen from outside, at its edges (issue 13, item B): a signed body that is not
JSON gets 400 (an unsigned one 401, before anything is parsed), and with one bot token an event
or command from another workspace is acknowledged and dropped, never answered with our token."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time

import aiohttp
import pytest

from adapters.slack.home_team import Home
from tests.fakes.openai import FakeOpenAI
from tests.fakes.slack import SIGNING_SECRET, FakeSlack
from tests.slack.slack_rig import Bot

USER = "UALICE"
STRANGER = "USTRANGER"  # a person in the other workspace
CHANNEL = "C0GENERAL"
OTHER_CHANNEL = "C0ELSEWHERE"
QUESTION = "How many vacation days do employees get?"


def setup_slack(fake: FakeSlack) -> None:
    fake.add_team("T1", admins=("UADMIN",))
    fake.add_user("T1", USER)
    # The same Slack app installed in a second workspace: Slack signs its events with the same
    # secret, but this bot was set up with T1's token alone.
    fake.add_team("T2", admins=(STRANGER,))


async def post(
    bot: Bot, body: bytes, content_type: str, *, secret: str = SIGNING_SECRET
) -> aiohttp.ClientResponse:
    """POST `body` to the bot as Slack would, signed with `secret`."""
    timestamp = str(int(time.time()))
    # Slack's v0 signature, over the bytes (slack_sdk's helper signs text only).
    digest = hmac.new(secret.encode(), b"v0:%s:%s" % (timestamp.encode(), body), hashlib.sha256)
    signature = f"v0={digest.hexdigest()}"
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
    }
    url = f"{bot.url}/slack/events"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as response,
    ):
        await response.read()
        return response


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"type": "event_callback", "event": ', "application/json"),
        (b"[1, 2, 3]", "application/json"),
        (b'"just a string"', "application/json"),
        (b"\xff\xfe not utf-8", "application/json"),
        (b"payload=%7Bnot+json", "application/x-www-form-urlencoded"),
        (b"payload=%5B%5D", "application/x-www-form-urlencoded"),
    ],
)
async def test_a_signed_body_that_is_not_a_json_object_gets_400(
    fake_slack: FakeSlack, bot: Bot, body: bytes, content_type: str
) -> None:
    response = await post(bot, body, content_type)
    assert response.status == 400
    assert fake_slack.calls == []


async def test_an_unsigned_malformed_body_gets_401_not_400(bot: Bot) -> None:
    response = await post(bot, b"{not json", "application/json", secret="someone-else")
    assert response.status == 401  # who is not Slack learns nothing about the parsing


async def test_the_bot_still_answers_after_malformed_requests(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    assert (await post(bot, b"{", "application/json")).status == 400
    fake_openai.reply("Employees get 25 days [1].")
    asked = await fake_slack.say("T1", CHANNEL, USER, f"<@UBOTT1> {QUESTION}")
    await bot.idle()
    await fake_slack.wait_for(
        lambda: any(m.buttons for m in fake_slack.bot_messages(CHANNEL, asked.ts))
    )


async def test_an_event_from_another_workspace_is_acknowledged_and_dropped(
    fake_slack: FakeSlack,
    fake_openai: FakeOpenAI,
    bot: Bot,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    # `say` asserts each event's ack is a 200, so Slack would not redeliver.
    await fake_slack.say("T2", OTHER_CHANNEL, STRANGER, f"<@UBOTT2> {QUESTION}")
    await fake_slack.say("T2", "D0STRANGER", STRANGER, QUESTION, channel_type="im")
    await bot.idle()

    assert fake_slack.count("chat.postMessage") == 0  # not even tried with T1's token
    assert fake_slack.count("chat.postEphemeral") == 0
    assert fake_openai.chat_requests == []
    assert "from team T2, not this bot's T1: ignored" in caplog.text

    # T1 itself is still answered.
    fake_openai.reply("Employees get 25 days [1].")
    asked = await fake_slack.say("T1", CHANNEL, USER, f"<@UBOTT1> {QUESTION}")
    await bot.idle()
    await fake_slack.wait_for(
        lambda: any(m.buttons for m in fake_slack.bot_messages(CHANNEL, asked.ts))
    )


async def test_a_command_from_another_workspace_sets_nothing(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    before = len(fake_slack.responses)
    response = await fake_slack.command("T2", STRANGER, "sk-from-elsewhere-0000")
    assert response.status == 200
    assert "another Slack workspace" in await response.text()
    await bot.idle()
    assert len(fake_slack.responses) == before
    assert fake_openai.requests == []  # the key was never even checked
    assert await bot.core.store.get_api_key("slack:T2") is None


@pytest.mark.parametrize(
    ("home", "enterprise", "team", "served"),
    [
        (Home("T1", None, False), None, "T1", True),
        (Home("T1", None, False), None, "T2", False),
        (Home("T1", None, False), None, None, False),
        (Home("T1", "E1", False), "E1", "T2", False),  # one workspace of an org: that one only
        (Home(None, "E1", True), "E1", "T2", True),  # an org-wide token: every workspace of E1
        (Home(None, "E1", True), "E2", "T2", False),
        (Home(None, "E1", True), None, "T2", False),
    ],
)
def test_which_requests_a_token_serves(
    home: Home, enterprise: str | None, team: str | None, served: bool
) -> None:
    assert home.serves(enterprise, team) is served
