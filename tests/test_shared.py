"""REDIS_URL at start: which URLs are taken, an unreachable Redis refuses to start in one line
naming no password, a shared database without Redis warns, and the core shares through it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from bot.cli import main
from bot.core import Core
from bot.settings import Settings
from bot.shared import UNSHARED
from bot.streaming.shared_budget import SharedBudgets
from tests.store_backends import TEST_SECRET

PASSWORD = "hunter2secret"


@pytest.mark.parametrize(
    "url", ["redis://:pw@cache:6379/0", "rediss://user:pw@cache:6380/2", "unix:///run/r.sock?db=1"]
)
def test_redis_urls_are_taken(url: str) -> None:
    settings = Settings(_env_file=None, redis_url=url)  # type: ignore[call-arg]
    assert settings.redis_url is not None and settings.redis_url.get_secret_value() == url


@pytest.mark.parametrize("url", [f"http://:{PASSWORD}@cache:6379/0", f"cache:{PASSWORD}"])
def test_other_urls_are_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, redis_url=url)  # type: ignore[call-arg]
    message = str(refused.value)
    assert "give a redis:// URL" in message and "REDIS_URL unset" in message
    assert PASSWORD not in message


def test_an_unreachable_redis_refuses_to_start_in_one_line_without_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://:{PASSWORD}@127.0.0.1:1/3")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))

    status = main(["run"])

    captured = capsys.readouterr()
    output = (captured.out + captured.err).strip()
    assert status == 1
    assert output.startswith("bot: cannot connect to Redis at redis://127.0.0.1:1/3")
    assert "check REDIS_URL" in output
    assert len(output.splitlines()) == 1
    assert PASSWORD not in output


async def test_a_shared_database_without_redis_warns_at_start(
    postgres_url: str, fake_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = fake_settings.model_copy(
        update={"database_url": SecretStr(postgres_url), "secret_key": SecretStr(TEST_SECRET)}
    )
    with caplog.at_level(logging.WARNING):
        core = await Core.open(settings)
    await core.close()

    assert UNSHARED in caplog.messages
    assert UNSHARED == (
        "DATABASE_URL is shared but REDIS_URL is unset: each replica spends the platforms' "
        "whole rate budget on its own; set REDIS_URL when running more than one replica."
    )


async def test_with_redis_the_core_shares_its_budgets_and_closes_the_client(
    redis_url: str, fake_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = fake_settings.model_copy(update={"redis_url": SecretStr(redis_url)})
    with caplog.at_level(logging.INFO):
        core = await Core.open(settings)
    try:
        assert isinstance(core.editor.budgets, SharedBudgets)
        assert core.shared is not None
        await core.shared.client.ping()
    finally:
        await core.close()
    assert UNSHARED not in caplog.messages
    assert f"rate budgets and question limits are shared through Redis at {redis_url}" in (
        caplog.messages
    )
