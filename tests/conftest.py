"""Shared fixtures: the loopback OpenAI-compatible fake and settings pointing at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.settings import Settings
from tests.fake_openai import FakeOpenAI


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    """A running fake; the test fails if any traffic broke OpenAI's published spec."""
    fake = FakeOpenAI()
    await fake.start()
    yield fake
    await fake.close()
    assert fake.violations == [], "traffic broke the OpenAI spec"


@pytest.fixture
def fake_settings(tmp_path: Path, fake_openai: FakeOpenAI) -> Settings:
    """Settings aimed at the fake, with no fallback key and data under tmp_path."""
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        knowledge_dir=tmp_path / "knowledge",
        openai_base_url=fake_openai.base_url,
        openai_api_key=None,
        chat_model="gpt-fake-mini",
        embed_model="text-embedding-fake",
    )
