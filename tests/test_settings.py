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


def test_allow_lists_and_fallback_workspaces_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_ALLOWED_TEAMS", "T0123ABC, E0456DEF")
    monkeypatch.setenv("DISCORD_ALLOWED_GUILDS", "123456789012345678")
    monkeypatch.setenv("FALLBACK_KEY_SCOPE", "listed")
    monkeypatch.setenv("FALLBACK_KEY_WORKSPACES", "slack:T0123ABC,slack:E1X:T2Y,discord:12345")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.slack_allowed_teams == ["T0123ABC", "E0456DEF"]
    assert settings.discord_allowed_guilds == ["123456789012345678"]
    assert settings.fallback_key_workspaces == ["slack:T0123ABC", "slack:E1X:T2Y", "discord:12345"]


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SLACK_ALLOWED_TEAMS", "T0123,myteam", "'myteam' is not an id like T0123ABCD"),
        ("SLACK_ALLOWED_TEAMS", "U0123ABC", "'U0123ABC' is not an id like T0123ABCD"),
        ("DISCORD_ALLOWED_GUILDS", "my-server", "'my-server' is not an id like 1234567"),
        ("FALLBACK_KEY_WORKSPACES", "T0123ABC", "'T0123ABC' is not an id like slack:T0123ABCD"),
        ("QUESTIONS_PER_MINUTE_PER_USER", "-1", "greater than or equal to 0"),
        ("FALLBACK_KEY_SCOPE", "some", "'all', 'embeddings' or 'listed'"),
    ],
)
def test_malformed_ids_and_limits_are_refused_with_what_was_wrong(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    if name == "FALLBACK_KEY_WORKSPACES":
        monkeypatch.setenv("FALLBACK_KEY_SCOPE", "listed")
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=re.escape(says)) as refused:
        Settings(_env_file=None)  # type: ignore[call-arg]
    assert name.lower() in str(refused.value)


def test_fallback_workspaces_without_the_listed_scope_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A list nothing reads would look like a restriction that isn't there.
    monkeypatch.setenv("FALLBACK_KEY_WORKSPACES", "slack:T0123ABC")
    with pytest.raises(ValueError, match="set FALLBACK_KEY_SCOPE=listed"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_shard_settings_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_SHARD_COUNT", "4")
    monkeypatch.setenv("DISCORD_SHARD_IDS", "3, 1")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.discord_shard_count == 4
    assert settings.discord_shard_ids == [3, 1]


@pytest.mark.parametrize(
    ("count", "ids", "says"),
    [
        (
            "2",
            "0,2",
            "DISCORD_SHARD_IDS has 2, but DISCORD_SHARD_COUNT=2: shard ids run from 0 to 1",
        ),
        (None, "0", "DISCORD_SHARD_IDS is set but DISCORD_SHARD_COUNT is not"),
        ("2", "first", "'first' is not a shard id: give numbers like 0,1,2"),
        ("2", "-1", "'-1' is not a shard id"),
        ("2", "1,1", "'1,1' lists a shard twice"),
        ("0", None, "greater than or equal to 1"),
    ],
)
def test_shard_settings_that_cannot_work_are_refused_with_what_to_change(
    monkeypatch: pytest.MonkeyPatch, count: str | None, ids: str | None, says: str
) -> None:
    for name, value in (("DISCORD_SHARD_COUNT", count), ("DISCORD_SHARD_IDS", ids)):
        if value is not None:
            monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=re.escape(says)):
        Settings(_env_file=None)  # type: ignore[call-arg]
