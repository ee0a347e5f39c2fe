"""Many workspaces: the OAuth install flow into our database, keys, answers and history kept
apart per workspace, and an uninstall deleting that workspace's key and tokens."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from slack_sdk.oauth.installation_store.models.bot import Bot as SlackBot

from adapters.slack.install import SlackInstallationStore
from bot.settings import Settings
from tests.fakes.openai import FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.slack.slack_rig import Bot, install, oauth_settings, running_bot

KEYS = {"T1": "sk-team-one-key-aaaa1111", "T2": "sk-team-two-key-bbbb2222"}
VACATION = "How many vacation days do employees get?"


def setup_slack(fake: FakeSlack) -> None:
    fake.add_team("T1", admins=("UADMIN1",))
    fake.add_team("T2", enterprise_id="E1", admins=("UADMIN2",))


@pytest.fixture
async def bot(
    fake_settings: Settings, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> AsyncIterator[Bot]:
    fake_openai.keys = set(KEYS.values())
    async with running_bot(oauth_settings(fake_settings, fake_slack), fake_slack) as running:
        yield running


def workspace(fake: FakeSlack, team: str) -> str:
    enterprise = fake.teams[team].enterprise_id
    return f"slack:{enterprise}:{team}" if enterprise else f"slack:{team}"


async def ask(fake: FakeSlack, bot: Bot, team: str, channel: str) -> str:
    asked = await fake.say(team, channel, "UASKER", f"<@{fake.teams[team].bot_user_id}> {VACATION}")
    await bot.idle()
    await fake.wait_for(lambda: any(m.buttons for m in fake.bot_messages(channel, asked.ts)))
    return asked.ts


async def test_two_workspaces_install_set_keys_and_stay_apart(
    fake_slack: FakeSlack,
    fake_openai: FakeOpenAI,
    bot: Bot,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    for team in ("T1", "T2"):
        await install(fake_slack, bot, team)
    store = bot.core.store
    assert await store.get_slack_installation("slack:T1") is not None
    assert await store.get_slack_installation("slack:E1:T2") is not None  # Enterprise Grid
    database = Path(bot.settings.database_path)
    for file in database.parent.glob(database.name + "*"):
        raw = file.read_bytes()
        assert not any(t.token.encode() in raw for t in fake_slack.teams.values())
    assert not any(t.token in caplog.text for t in fake_slack.teams.values())

    for team, admin in (("T1", "UADMIN1"), ("T2", "UADMIN2")):
        await fake_slack.command(team, admin, KEYS[team])
        await bot.idle()
    assert await store.get_api_key("slack:T1") == KEYS["T1"]
    assert await store.get_api_key("slack:E1:T2") == KEYS["T2"]

    fake_openai.reply("Team one: 25 days [1].")
    one = await ask(fake_slack, bot, "T1", "C1")
    fake_openai.reply("Team two: 25 days [1].")
    two = await ask(fake_slack, bot, "T2", "C2")

    # Each answer went to its own workspace with its own token (the fake refuses a channel of
    # another workspace), and each was paid for with its own workspace's key.
    assert "Team one" in fake_slack.bot_messages("C1", one)[0].shown
    assert "Team two" in fake_slack.bot_messages("C2", two)[0].shown
    streamed = [r.api_key for r in fake_openai.chat_requests if r.body.get("stream")]
    assert streamed == [KEYS["T1"], KEYS["T2"]]
    posts = {(c.team, c.args["channel"]) for c in fake_slack.calls if c.method.startswith("chat.")}
    assert posts == {("T1", "C1"), ("T2", "C2")}
    # History is per workspace: a thread key of one team is not another's.
    assert await store.has_conversation(f"slack:T1:C1:{one}")
    assert not await store.has_conversation(f"slack:T2:C1:{one}")
    assert KEYS["T1"] not in caplog.text and KEYS["T2"] not in caplog.text

    # A vote from another workspace cannot land on this workspace's answer.
    [answer] = fake_slack.bot_messages("C1", one)
    assert (await fake_slack.click("T2", answer, "feedback:positive", "UEVE")).status == 200
    await bot.idle()
    stored = await store.get_message(int(answer.buttons["feedback:positive"].split(":")[1]))
    assert stored is not None and stored.feedback is None
    assert "no longer stored" in fake_slack.responses[-1]["text"]


async def test_uninstall_deletes_that_workspace_key_and_tokens_only(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    for team, admin in (("T1", "UADMIN1"), ("T2", "UADMIN2")):
        await install(fake_slack, bot, team)
        await fake_slack.command(team, admin, KEYS[team])
        await bot.idle()

    uninstalled = fake_slack.envelope("T1", {"type": "app_uninstalled", "event_ts": "1.2"})
    assert (await fake_slack.deliver(uninstalled)).status == 200
    await bot.idle()

    store = bot.core.store
    assert await store.get_api_key("slack:T1") is None
    assert await store.get_slack_installation("slack:T1") is None
    assert await store.get_api_key("slack:E1:T2") == KEYS["T2"]
    assert await store.get_slack_installation("slack:E1:T2") is not None

    # The uninstalled workspace gets no answer (no token); the other still does.
    posts = fake_slack.count("chat.postMessage")
    await fake_slack.say(
        "T1", "C1", "UASKER", f"<@{fake_slack.teams['T1'].bot_user_id}> {VACATION}"
    )
    await bot.idle()
    assert fake_slack.count("chat.postMessage") == posts
    fake_openai.reply("Still here [1].")
    two = await ask(fake_slack, bot, "T2", "C2")
    assert "Still here" in fake_slack.bot_messages("C2", two)[0].text


async def test_revoked_bot_tokens_forget_the_workspace(fake_slack: FakeSlack, bot: Bot) -> None:
    await install(fake_slack, bot, "T1")
    await fake_slack.command("T1", "UADMIN1", KEYS["T1"])
    await bot.idle()
    revoked = fake_slack.envelope(
        "T1",
        {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["UBOTT1"]}, "event_ts": "1.3"},
    )
    assert (await fake_slack.deliver(revoked)).status == 200
    await bot.idle()
    assert await bot.core.store.get_api_key("slack:T1") is None
    assert await bot.core.store.get_slack_installation("slack:T1") is None


@pytest.mark.parametrize(
    "removal",
    [
        {"type": "app_uninstalled", "event_ts": "1.4"},
        {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["UBOTT2"]}, "event_ts": "1.5"},
    ],
)
async def test_an_org_wide_uninstall_deletes_the_org_installation(
    fake_slack: FakeSlack, bot: Bot, removal: dict[str, object]
) -> None:
    # As bolt saves an Enterprise Grid org-wide install: one bot token for every workspace of
    # E1, found by the org alone.
    org = fake_slack.teams["T2"]
    await SlackInstallationStore(bot.core.store, logging.getLogger(__name__)).async_save_bot(
        SlackBot(
            app_id="A0FAKEAPP",
            enterprise_id="E1",
            team_id=None,
            bot_token=org.token,
            bot_id=org.bot_id,
            bot_user_id=org.bot_user_id,
            installed_at=1_700_000_000.0,
            is_enterprise_install=True,
        )
    )
    store = bot.core.store
    await store.set_api_key("slack:E1:T2", KEYS["T2"], set_by="UADMIN2")
    await store.set_api_key("slack:E1:T3", "sk-another-workspace-of-e1", set_by="U3")
    await store.set_api_key("slack:E10:T4", "sk-a-workspace-of-e10-0000", set_by="U4")
    await install(fake_slack, bot, "T1")  # a workspace of its own, outside the org
    await store.set_api_key("slack:T1", KEYS["T1"], set_by="UADMIN1")

    # Slack names the workspace the event came through; the install is still the org's.
    removed = fake_slack.envelope("T2", removal, org_wide=True)
    assert (await fake_slack.deliver(removed)).status == 200
    await bot.idle()

    assert await store.get_slack_installation("slack:E1") is None
    assert await store.get_api_key("slack:E1:T2") is None
    assert await store.get_api_key("slack:E1:T3") is None  # every workspace of the org
    assert await store.get_api_key("slack:E10:T4") is not None  # another org
    assert await store.get_slack_installation("slack:T1") is not None
    assert await store.get_api_key("slack:T1") == KEYS["T1"]
