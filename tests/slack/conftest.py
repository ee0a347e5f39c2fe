"""The Slack tests' fixtures, once: the fake Slack (teams and users from the test module's
`setup_slack(fake)`, limits from indirect parametrisation or the module's `SLACK_LIMITS`), checked
at the end for spec violations, calls made inside a Retry-After and mentions that would notify
anyone, and a running bot with the fallback key set for T1 (modules that need another bot define
their own)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.settings import Settings
from tests.fakes.openai import FAKE_KEY
from tests.fakes.slack import FakeSlack
from tests.slack.slack_rig import Bot, running_bot, slack_settings


@pytest.fixture
async def fake_slack(request: pytest.FixtureRequest) -> AsyncIterator[FakeSlack]:
    limits = getattr(request, "param", getattr(request.module, "SLACK_LIMITS", {}))
    fake = FakeSlack(**limits)
    request.module.setup_slack(fake)
    await fake.start()
    yield fake
    await fake.close()
    assert fake.violations == [], f"the Slack traffic broke the spec: {fake.violations}"
    assert fake.early_calls == [], "the bot called again before Retry-After ran out"
    assert fake.notified == [], f"the bot's messages would notify {fake.notified}"


@pytest.fixture
async def bot(fake_settings: Settings, fake_slack: FakeSlack) -> AsyncIterator[Bot]:
    async with running_bot(slack_settings(fake_settings, fake_slack), fake_slack) as running:
        await running.core.store.set_api_key("slack:T1", FAKE_KEY, set_by="UADMIN")
        yield running
