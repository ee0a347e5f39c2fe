"""/setkey end to end: who may set the workspace's key, what each outcome shows, the key
encrypted at rest and never in logs, and answers made with the key that was set."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.settings import Settings
from tests.fakes.openai import FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.slack.slack_rig import Bot, running_bot, slack_settings

ADMIN = "UADMIN"
MEMBER = "UMEMBER"
LISTED = "ULISTED"  # an ordinary member named in SLACK_ADMIN_USER_IDS
KEY = "sk-workspace-one-secret-9f3c"
NEW_KEY = "sk-workspace-one-rotated-77aa"
CHANNEL = "C0GENERAL"
VACATION = "How many vacation days do employees get?"


def setup_slack(fake: FakeSlack) -> None:
    fake.add_team("T1", admins=(ADMIN,))
    fake.add_user("T1", MEMBER)
    fake.add_user("T1", LISTED)


@pytest.fixture
async def bot(
    fake_settings: Settings, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> AsyncIterator[Bot]:
    fake_openai.keys = {KEY, NEW_KEY}
    settings = slack_settings(fake_settings, fake_slack, slack_admin_user_ids=[LISTED])
    async with running_bot(settings, fake_slack) as running:
        yield running


async def setkey(fake: FakeSlack, bot: Bot, user: str, text: str) -> tuple[str, str]:
    """Run /setkey; returns (what the immediate ack showed, the ephemeral reply's text)."""
    before = len(fake.responses)
    response = await fake.command("T1", user, text)
    assert response.status == 200
    ack = (await response.text()) or ""
    await bot.idle()
    await fake.wait_for(lambda: len(fake.responses) > before)
    [reply] = fake.responses[before:]
    assert reply["response_type"] == "ephemeral"
    return ack, str(reply["text"])


async def test_an_admin_sets_the_key_it_is_checked_stored_encrypted_and_used(
    fake_slack: FakeSlack,
    fake_openai: FakeOpenAI,
    bot: Bot,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    ack, reply = await setkey(fake_slack, bot, ADMIN, f"  {KEY} ")

    assert "Checking" in ack and KEY not in ack  # acknowledged at once, key not echoed
    assert "…9f3c" in reply and KEY not in reply
    assert fake_openai.requests[-1].path.endswith("/models")  # validated with the endpoint
    assert fake_openai.requests[-1].api_key == KEY
    assert await bot.core.store.get_api_key("slack:T1") == KEY
    database = Path(bot.settings.database_path)
    for file in database.parent.glob(database.name + "*"):  # the database and its WAL
        assert KEY.encode() not in file.read_bytes()

    fake_openai.reply("Employees get 25 days per year [1].")
    asked = await fake_slack.say(
        "T1", CHANNEL, MEMBER, f"<@{fake_slack.teams['T1'].bot_user_id}> {VACATION}"
    )
    await bot.idle()
    await fake_slack.wait_for(
        lambda: any(m.buttons for m in fake_slack.bot_messages(CHANNEL, asked.ts))
    )
    [answer_call] = [r for r in fake_openai.chat_requests if r.body.get("stream")]
    assert answer_call.api_key == KEY  # the workspace's own key pays for its answers
    assert KEY not in caplog.text  # bolt and slack_sdk log payloads at DEBUG: not this one


async def test_a_member_cannot_set_or_clear_the_key(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    await setkey(fake_slack, bot, ADMIN, KEY)
    _, refused = await setkey(fake_slack, bot, MEMBER, NEW_KEY)
    assert "Only workspace admins" in refused and "Nothing was changed" in refused
    _, refused = await setkey(fake_slack, bot, MEMBER, "clear")
    assert "Only workspace admins" in refused
    assert await bot.core.store.get_api_key("slack:T1") == KEY
    assert not any(r.api_key == NEW_KEY for r in fake_openai.requests)  # never even checked


async def test_a_user_listed_in_settings_counts_as_admin(fake_slack: FakeSlack, bot: Bot) -> None:
    _, reply = await setkey(fake_slack, bot, LISTED, KEY)
    assert "…9f3c" in reply
    assert await bot.core.store.get_api_key("slack:T1") == KEY


async def test_an_invalid_key_is_refused_and_the_old_one_kept(
    fake_slack: FakeSlack, bot: Bot
) -> None:
    await setkey(fake_slack, bot, ADMIN, KEY)
    _, refused = await setkey(fake_slack, bot, ADMIN, "sk-not-a-real-key-0000")
    assert "rejected" in refused and "Nothing was changed" in refused
    _, garbled = await setkey(fake_slack, bot, ADMIN, "sk-two words")
    assert "spaces" in garbled and "Nothing was changed" in garbled
    assert await bot.core.store.get_api_key("slack:T1") == KEY


async def test_status_and_clear(fake_slack: FakeSlack, bot: Bot) -> None:
    _, status = await setkey(fake_slack, bot, MEMBER, "")
    assert "No API key is set" in status and "/setkey &lt;key&gt;" in status
    assert "<" not in status  # Slack would read a raw "<key>" as a link
    await setkey(fake_slack, bot, ADMIN, KEY)
    _, status = await setkey(fake_slack, bot, MEMBER, "   ")
    assert "…9f3c" in status and KEY not in status and "<" not in status
    _, cleared = await setkey(fake_slack, bot, ADMIN, "clear")
    assert "Removed" in cleared
    assert await bot.core.store.get_api_key("slack:T1") is None
    _, again = await setkey(fake_slack, bot, ADMIN, "CLEAR")
    assert "no API key to remove" in again


async def test_without_a_key_a_mention_gets_passages_and_the_setkey_hint(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, bot: Bot
) -> None:
    asked = await fake_slack.say(
        "T1", CHANNEL, MEMBER, f"<@{fake_slack.teams['T1'].bot_user_id}> {VACATION}"
    )
    await bot.idle()
    await fake_slack.wait_for(
        lambda: any(m.buttons for m in fake_slack.bot_messages(CHANNEL, asked.ts))
    )
    [answer] = fake_slack.bot_messages(CHANNEL, asked.ts)
    assert "25 days of paid vacation" in answer.text  # the best passage itself
    assert "vacation.md" in answer.text  # with its source
    assert "/setkey" in answer.text
    assert fake_openai.chat_requests == []
