"""/setkey's form end to end (issue 13, item D): `/setkey` alone opens a modal with the command's
trigger_id, the key pasted there is checked like the typed form, problems show on the field
(response_action "errors") and never echo the key; SLACK_ADMIN_USER_IDS is scoped per workspace."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from adapters.slack import setkey_form
from adapters.slack.app import build_slack_app
from adapters.slack.setkey import Admins, Asker
from bot.errors import ConfigError
from bot.settings import Settings
from tests.fakes.openai import FakeOpenAI
from tests.fakes.slack import FakeSlack, View
from tests.fakes.slack import views as fake_views
from tests.slack.slack_rig import (
    Bot,
    install,
    oauth_settings,
    open_core,
    running_bot,
    slack_settings,
)

ADMIN = "UADMIN"
MEMBER = "UMEMBER"
KEY = "sk-workspace-form-secret-9f3c"
KEY_FIELD = "api_key"


def setup_slack(fake: FakeSlack) -> None:
    fake.add_team("T1", admins=(ADMIN,))
    fake.add_user("T1", MEMBER)


@pytest.fixture
async def bot(
    fake_settings: Settings, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> AsyncIterator[Bot]:
    fake_openai.keys = {KEY}
    async with running_bot(slack_settings(fake_settings, fake_slack), fake_slack) as running:
        yield running


async def open_form(fake: FakeSlack, bot: Bot, user: str = ADMIN) -> View:
    """Run `/setkey` alone as `user` and return the modal it opened."""
    before = set(fake.views)
    response = await fake.command("T1", user, "")
    assert response.status == 200 and (await response.text()) == ""  # a bare ack
    await bot.idle()
    [view] = [v for v in fake.open_views(user) if v.id not in before]
    return view


async def test_an_admin_sets_the_key_in_the_form_and_it_is_never_echoed(
    fake_slack: FakeSlack,
    fake_openai: FakeOpenAI,
    bot: Bot,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    view = await open_form(fake_slack, bot)

    [opened] = [c for c in fake_slack.calls if c.method == "views.open"]
    assert opened.team == "T1"  # with the workspace's token and the command's trigger_id
    assert "No API key is set" in view.text()
    assert fake_slack.responses == []  # the form is the answer: no message besides it

    response = await fake_slack.submit(view, {KEY_FIELD: f"  {KEY} "})
    await bot.idle()

    assert response.status == 200
    assert view.open and view.errors == {}
    assert "Saved" in view.text() and "…9f3c" in view.text()  # the modal shows the outcome
    assert fake_openai.requests[-1].path.endswith("/models")  # checked with the endpoint
    assert fake_openai.requests[-1].api_key == KEY
    assert await bot.core.store.get_api_key("slack:T1") == KEY
    shown = [v for v in view.history] + fake_slack.responses
    assert KEY not in repr(shown)
    assert KEY not in caplog.text  # bolt logs the submission's payload at DEBUG: not this one

    # Opened again, it says which key is set, by its last four characters only.
    again = await open_form(fake_slack, bot)
    assert "…9f3c" in again.text() and KEY not in again.text()


async def test_a_bad_key_is_shown_on_the_field_and_nothing_changes(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    view = await open_form(fake_slack, bot)

    await fake_slack.submit(view, {KEY_FIELD: "   "})
    assert view.errors == {KEY_FIELD: "Paste the API key into this field."}

    await fake_slack.submit(view, {KEY_FIELD: "sk-two words"})
    assert view.open and "spaces" in view.errors[KEY_FIELD]
    assert "Nothing was changed" in view.errors[KEY_FIELD]
    assert fake_openai.requests == []  # refused before asking the endpoint

    await fake_slack.submit(view, {KEY_FIELD: "sk-not-a-real-key-0000"})
    assert "rejected" in view.errors[KEY_FIELD]
    assert "sk-not-a-real-key" not in view.errors[KEY_FIELD]

    await fake_slack.submit(view, {KEY_FIELD: KEY})  # fixed in the same form
    await bot.idle()
    assert view.errors == {} and "Saved" in view.text()
    assert await bot.core.store.get_api_key("slack:T1") == KEY


async def test_a_member_sees_the_status_instead_of_the_form(
    fake_slack: FakeSlack, bot: Bot
) -> None:
    response = await fake_slack.command("T1", MEMBER, "")
    assert response.status == 200
    await bot.idle()
    await fake_slack.wait_for(lambda: len(fake_slack.responses) == 1)
    assert fake_slack.open_views(MEMBER) == []
    assert fake_slack.count("views.open") == 0
    [status] = fake_slack.responses
    assert status["response_type"] == "ephemeral" and "No API key is set" in status["text"]


async def test_an_admin_who_lost_the_role_cannot_submit(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    view = await open_form(fake_slack, bot)
    fake_slack.teams["T1"].users[ADMIN].is_admin = False  # demoted while the form was open
    await fake_slack.submit(view, {KEY_FIELD: KEY})
    assert "Only workspace admins" in view.errors[KEY_FIELD]
    assert fake_openai.requests == []
    assert await bot.core.store.get_api_key("slack:T1") is None


async def test_a_slow_check_finishes_after_the_form_and_reports_ephemerally(
    fake_slack: FakeSlack, bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if the endpoint took longer than Slack waits for the submission's answer.
    monkeypatch.setattr(setkey_form, "FORM_DEADLINE", 0.0)
    view = await open_form(fake_slack, bot)
    await fake_slack.submit(view, {KEY_FIELD: KEY})
    assert "Still checking" in view.text() and view.errors == {}
    await bot.idle()
    await fake_slack.wait_for(lambda: len(fake_slack.responses) == 1)
    [outcome] = fake_slack.responses
    assert outcome["response_type"] == "ephemeral"
    assert "Saved" in outcome["text"] and "…9f3c" in outcome["text"]
    assert await bot.core.store.get_api_key("slack:T1") == KEY


async def test_an_expired_trigger_says_so_and_suggests_the_typed_form(
    fake_slack: FakeSlack, bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fake_views, "TRIGGER_LIFETIME", -1.0)  # every trigger_id has expired
    await fake_slack.command("T1", ADMIN, "")
    await bot.idle()
    await fake_slack.wait_for(lambda: len(fake_slack.responses) == 1)
    [reply] = fake_slack.responses
    assert "Couldn't open the form (expired_trigger_id)" in reply["text"]
    assert "/setkey" in reply["text"]


async def test_the_typed_form_still_works(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    response = await fake_slack.command("T1", ADMIN, KEY)
    assert KEY not in await response.text()
    await bot.idle()
    await fake_slack.wait_for(lambda: len(fake_slack.responses) == 1)
    assert "…9f3c" in fake_slack.responses[0]["text"]
    assert fake_slack.count("views.open") == 0


# -- SLACK_ADMIN_USER_IDS, per workspace ----------------------------------------------------------


@pytest.fixture
async def oauth_bot(
    fake_settings: Settings, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> AsyncIterator[Bot]:
    """Installed by OAuth in T1 and T2, with one id scoped to T1 and one bare."""
    fake_slack.add_team("T2")
    for team in ("T1", "T2"):
        fake_slack.add_user(team, "ULISTED")
        fake_slack.add_user(team, "UBARE")
    fake_openai.keys = {KEY}
    settings = oauth_settings(
        fake_settings, fake_slack, slack_admin_user_ids=["T1:ULISTED", "UBARE"]
    )
    async with running_bot(settings, fake_slack) as running:
        for team in ("T1", "T2"):
            await install(fake_slack, running, team)
        yield running


async def typed_setkey(fake: FakeSlack, bot: Bot, team: str, user: str) -> str:
    """Run `/setkey KEY` as `user` of `team`; returns the ephemeral reply."""
    before = len(fake.responses)
    await fake.command(team, user, KEY)
    await bot.idle()
    await fake.wait_for(lambda: len(fake.responses) > before)
    return str(fake.responses[-1]["text"])


async def test_a_scoped_admin_id_counts_in_its_workspace_only(
    fake_slack: FakeSlack, oauth_bot: Bot
) -> None:
    assert "…9f3c" in await typed_setkey(fake_slack, oauth_bot, "T1", "ULISTED")
    assert "Only workspace admins" in await typed_setkey(fake_slack, oauth_bot, "T2", "ULISTED")
    assert await oauth_bot.core.store.get_api_key("slack:T1") == KEY
    assert await oauth_bot.core.store.get_api_key("slack:T2") is None


async def test_a_bare_admin_id_counts_nowhere_with_oauth_installs(
    fake_slack: FakeSlack, oauth_bot: Bot
) -> None:
    for team in ("T1", "T2"):
        assert "Only workspace admins" in await typed_setkey(fake_slack, oauth_bot, team, "UBARE")
    assert await oauth_bot.core.store.get_api_key("slack:T1") is None


def test_admin_ids_by_mode(caplog: pytest.LogCaptureFixture) -> None:
    def asker(team: str, user: str, enterprise: str | None = None) -> Asker:
        return Asker(f"slack:{team}", user, team, enterprise)

    single = Admins(["UBARE", "T1:USCOPED"], single_workspace=True)
    assert single.includes(asker("T1", "UBARE"))  # one token, one workspace: bare is safe
    assert single.includes(asker("T1", "USCOPED")) and not single.includes(asker("T9", "USCOPED"))

    oauth = Admins(["UBARE", "T1:USCOPED", "E1:WORGADMIN"], single_workspace=False)
    assert not oauth.includes(asker("T1", "UBARE"))
    assert "UBARE ignored" in caplog.text and "T0123:UBARE" in caplog.text
    assert oauth.includes(asker("T1", "USCOPED")) and not oauth.includes(asker("T2", "USCOPED"))
    assert oauth.includes(asker("T5", "WORGADMIN", "E1"))  # any workspace of the org E1
    assert not oauth.includes(asker("T5", "WORGADMIN", "E2"))


async def test_a_malformed_admin_id_stops_the_bot_at_start(
    fake_settings: Settings, fake_slack: FakeSlack
) -> None:
    settings = slack_settings(fake_settings, fake_slack, slack_admin_user_ids=["T1-U2"])
    core = await open_core(settings)
    try:
        with pytest.raises(ConfigError, match="T1-U2"):
            build_slack_app(settings, core)
    finally:
        await core.close()
