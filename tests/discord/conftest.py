"""The Discord tests' fixtures, once: the fake Discord (its limits set per test by indirect
parametrisation), its servers, and a running bot against it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.settings import Settings
from tests.discord.discord_rig import (
    EDIT_RATE,
    EDIT_WINDOW,
    RunningBot,
    Server,
    add_servers,
    discord_settings,
    running_bot,
)
from tests.fakes.discord import FakeDiscord


@pytest.fixture
async def fake(request: pytest.FixtureRequest) -> AsyncIterator[FakeDiscord]:
    rate, window, advertise = getattr(request, "param", (EDIT_RATE, EDIT_WINDOW, True))
    fake = FakeDiscord(budget_rate=rate, budget_window=window, advertise_budget=advertise)
    await fake.start()
    yield fake
    await fake.close()
    assert fake.violations == [], "the bot's requests broke Discord's API spec or rules"


@pytest.fixture
def servers(fake: FakeDiscord) -> list[Server]:
    return add_servers(fake)


@pytest.fixture
async def bot(
    fake: FakeDiscord, servers: list[Server], fake_settings: Settings
) -> AsyncIterator[RunningBot]:
    async with running_bot(discord_settings(fake_settings, fake), fake) as running:
        yield running
