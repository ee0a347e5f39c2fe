"""Settings: the names deployments rely on, `.env.example` in step, environment before `.env`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DESIGN_NAMES = {
    "DATA_DIR", "KNOWLEDGE_DIR", "OPENAI_BASE_URL", "OPENAI_API_KEY", "CHAT_MODEL", "EMBED_MODEL",
    "SECRET_KEY", "HOST", "PORT", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN",
    "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET", "SLACK_API_URL", "DISCORD_TOKEN", "DISCORD_API_URL",
    "DISCORD_GATEWAY_URL", "DISCORD_GUILD_IDS",
}  # fmt: skip


def example_names() -> list[str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return [m.group(1) for line in lines if (m := re.match(r"^([A-Z][A-Z0-9_]*)=", line))]


def test_env_example_documents_every_setting_once() -> None:
    names = example_names()
    assert len(names) == len(set(names)), "a setting is listed twice in .env.example"
    fields = {name.upper() for name in Settings.model_fields}
    assert set(names) == fields


def test_every_env_example_line_has_a_comment() -> None:
    for line in (ROOT / ".env.example").read_text().splitlines():
        if re.match(r"^[A-Z]", line):
            assert "  # " in line, f"undocumented: {line}"


def test_design_names_are_settings() -> None:
    assert DESIGN_NAMES <= {name.upper() for name in Settings.model_fields}


def test_env_example_values_parse_as_settings(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text((ROOT / ".env.example").read_text())
    settings = Settings(_env_file=env)  # type: ignore[call-arg]
    assert settings.port == 3000
    assert settings.openai_api_key is None
    assert settings.slack_api_url == "https://slack.com/api/"


def test_environment_wins_over_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text("PORT=4000\nCHAT_MODEL=from-dotenv\n")
    monkeypatch.setenv("PORT", "5000")
    settings = Settings(_env_file=env)  # type: ignore[call-arg]
    assert settings.port == 5000
    assert settings.chat_model == "from-dotenv"


def test_secrets_are_hidden_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret-value")
    monkeypatch.setenv("DISCORD_TOKEN", "discord-secret-token")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert "sk-very-secret-value" not in repr(settings)
    assert "discord-secret-token" not in str(settings.model_dump())


def test_id_lists_accept_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_GUILD_IDS", "111, 222,,333")
    monkeypatch.setenv("SLACK_ADMIN_USER_IDS", "U1")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.discord_guild_ids == ["111", "222", "333"]
    assert settings.slack_admin_user_ids == ["U1"]


def test_bad_port_is_refused_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "not-a-port")
    with pytest.raises(ValueError, match="port"):
        Settings(_env_file=None)  # type: ignore[call-arg]
