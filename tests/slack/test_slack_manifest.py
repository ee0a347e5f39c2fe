"""manifest.yml asks Slack for exactly what the adapter uses, so one paste creates a working app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from adapters.slack.app import BOT_SCOPES, EVENTS_PATH, REDIRECT_PATH

MANIFEST = Path(__file__).resolve().parents[2] / "manifest.yml"


def manifest() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(MANIFEST.read_text())
    return data


def test_scopes_are_exactly_the_ones_the_oauth_install_requests() -> None:
    assert sorted(manifest()["oauth_config"]["scopes"]["bot"]) == sorted(BOT_SCOPES)
    assert "user" not in manifest()["oauth_config"]["scopes"]


def test_events_command_and_interactivity_match_the_listeners() -> None:
    settings = manifest()["settings"]
    assert sorted(settings["event_subscriptions"]["bot_events"]) == sorted(
        [
            "app_mention",  # a question
            "message.channels",  # follow-ups in threads the bot answered in
            "message.groups",
            "message.im",  # direct messages
            "message.mpim",
            "app_uninstalled",  # forget the workspace's key and tokens
            "tokens_revoked",
            "assistant_thread_started",  # the agent view: suggested prompts
            "assistant_thread_context_changed",
        ]
    )
    assert settings["interactivity"]["is_enabled"] is True  # the 👍/👎 buttons
    assert settings["socket_mode_enabled"] is True  # works with no public URL as pasted
    [command] = manifest()["features"]["slash_commands"]
    assert command["command"] == "/setkey" and command["should_escape"] is False


def test_the_http_mode_urls_in_the_comments_point_at_the_bot_routes() -> None:
    text = MANIFEST.read_text()
    assert text.count(f"https://bot.example.com{EVENTS_PATH}") == 3
    assert f"https://bot.example.com{REDIRECT_PATH}" in text


def test_the_agent_view_is_on_with_the_scope_its_threads_need() -> None:
    view = manifest()["features"]["assistant_view"]
    assert view["assistant_description"].strip()
    assert "assistant:write" in manifest()["oauth_config"]["scopes"]["bot"]
