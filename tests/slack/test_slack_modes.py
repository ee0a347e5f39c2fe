"""How the Slack app is served: Socket Mode over the fake's websocket when SLACK_APP_TOKEN is set,
HTTP routes on the bot's aiohttp server otherwise (install routes only with OAuth)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web
from pydantic import SecretStr

from adapters.slack.app import add_slack_routes, background, build_slack_app, run_socket_mode
from bot.errors import ConfigError
from bot.settings import Settings
from tests.fakes.openai import FakeOpenAI
from tests.fakes.slack import APP_TOKEN, FakeSlack
from tests.slack.slack_rig import oauth_settings, open_core, running_bot, slack_settings

KEY = "sk-socket-mode-key-5e5e"
VACATION = "How many vacation days do employees get?"


def setup_slack(fake: FakeSlack) -> None:
    fake.add_team("T1", admins=("UADMIN",))


async def test_socket_mode_answers_mentions_and_setkey_without_logging_the_key(
    fake_settings: Settings,
    fake_slack: FakeSlack,
    fake_openai: FakeOpenAI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_openai.keys = {KEY}
    settings = slack_settings(
        fake_settings, fake_slack, slack_app_token=SecretStr(APP_TOKEN), slack_signing_secret=None
    )
    core = await open_core(settings)
    app = build_slack_app(settings, core)
    socket = asyncio.create_task(run_socket_mode(settings, app))
    try:
        await fake_slack.wait_for(lambda: fake_slack.socket_connected)

        envelope = await fake_slack.push(
            fake_slack.command_payload("T1", "UADMIN", KEY), "slash_commands"
        )
        await fake_slack.wait_for(
            lambda: any(a["envelope_id"] == envelope for a in fake_slack.socket_acks)
        )
        await background(app).idle()
        await fake_slack.wait_for(lambda: len(fake_slack.responses) == 1)
        assert "…5e5e" in fake_slack.responses[0]["text"]
        assert await core.store.get_api_key("slack:T1") == KEY

        fake_openai.reply("Employees get 25 days per year [1].")
        asked = fake_slack.user_says("T1", "C1", "UALICE", f"<@UBOTT1> {VACATION}")
        for event in fake_slack.events_for("T1", asked):
            await fake_slack.push(event)
        await fake_slack.wait_for(
            lambda: any(m.buttons for m in fake_slack.bot_messages("C1", asked.ts))
        )
        [answer] = fake_slack.bot_messages("C1", asked.ts)
        assert "25 days per year" in answer.text
        assert len(fake_slack.socket_acks) == 3  # every envelope acknowledged
    finally:
        socket.cancel()
        with pytest.raises(asyncio.CancelledError):
            await socket
        await core.close()
    assert fake_slack.count("apps.connections.open") == 1
    assert KEY not in caplog.text  # Socket Mode logs each payload it receives at DEBUG


async def test_socket_mode_needs_the_app_token(
    fake_settings: Settings, fake_slack: FakeSlack
) -> None:
    settings = slack_settings(fake_settings, fake_slack)
    core = await open_core(settings)
    try:
        with pytest.raises(ValueError, match="SLACK_APP_TOKEN"):
            await run_socket_mode(settings, build_slack_app(settings, core))
    finally:
        await core.close()


async def test_http_routes_with_and_without_oauth(
    fake_settings: Settings, fake_slack: FakeSlack
) -> None:
    single = slack_settings(fake_settings, fake_slack)
    core = await open_core(single)
    try:
        plain, multi, socket = web.Application(), web.Application(), web.Application()
        add_slack_routes(plain, build_slack_app(single, core))
        add_slack_routes(multi, build_slack_app(oauth_settings(fake_settings, fake_slack), core))
        # Socket Mode with OAuth and no signing secret: installs over HTTP, never unsigned events.
        unsigned = oauth_settings(
            fake_settings,
            fake_slack,
            slack_app_token=SecretStr(APP_TOKEN),
            slack_signing_secret=None,
        )
        add_slack_routes(socket, build_slack_app(unsigned, core))
        routes = {
            name: {
                (r.method, r.resource.canonical)
                for r in app.router.routes()
                if r.resource and r.method != "HEAD"  # aiohttp adds HEAD to every GET
            }
            for name, app in (("plain", plain), ("multi", multi), ("socket", socket))
        }
    finally:
        await core.close()
    assert routes["plain"] == {("POST", "/slack/events")}
    assert routes["socket"] == {("GET", "/slack/install"), ("GET", "/slack/oauth_redirect")}
    assert routes["multi"] >= {
        ("POST", "/slack/events"),
        ("GET", "/slack/install"),
        ("GET", "/slack/oauth_redirect"),
    }


async def test_unsigned_requests_are_refused(
    fake_settings: Settings, fake_slack: FakeSlack
) -> None:
    async with running_bot(slack_settings(fake_settings, fake_slack), fake_slack) as bot:
        fake_slack.signing_secret = "not-the-secret"
        message = fake_slack.user_says("T1", "C1", "UALICE", f"<@UBOTT1> {VACATION}")
        [mention, _] = fake_slack.events_for("T1", message)
        response = await fake_slack.deliver(mention)
        await bot.idle()
    assert response.status == 401
    assert fake_slack.count("chat.postMessage") == 0


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"slack_signing_secret": None}, "SLACK_SIGNING_SECRET"),
        ({"slack_bot_token": None}, "SLACK_BOT_TOKEN"),
        ({"slack_client_id": "1.2", "slack_client_secret": None}, "SLACK_CLIENT_SECRET"),
    ],
)
async def test_incomplete_slack_settings_fail_at_start_with_a_clear_message(
    fake_settings: Settings, fake_slack: FakeSlack, change: dict[str, object], complaint: str
) -> None:
    settings = slack_settings(fake_settings, fake_slack, **change)
    core = await open_core(settings)
    try:
        with pytest.raises(ConfigError, match=complaint):
            build_slack_app(settings, core)
    finally:
        await core.close()


async def test_the_request_url_check_slack_makes_on_setup_is_answered(
    fake_settings: Settings, fake_slack: FakeSlack
) -> None:
    async with running_bot(slack_settings(fake_settings, fake_slack), fake_slack):
        response = await fake_slack.deliver(
            {"token": "legacy", "challenge": "c-123", "type": "url_verification"}
        )
        assert response.status == 200
        assert "c-123" in await response.text()
