"""The operator's endpoints of a Slack bot, end to end: /metrics after a real answer through Slack
(outcome, first text, writes, Slack's 429s, no workspace or user named), /readyz ready and then
naming the database once it is gone, and a real `bot run` answering /readyz and /metrics."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.settings import Settings
from tests.bot_process import bot_run
from tests.fakes.openai import FAKE_KEY, FakeOpenAI
from tests.fakes.slack import SIGNING_SECRET, FakeSlack
from tests.slack.slack_rig import running_bot, slack_settings, write_knowledge

CHANNEL = "C0GENERAL"
VACATION = "How many vacation days do employees get?"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def setup_slack(fake: FakeSlack) -> None:
    fake.add_team("T1")


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def samples(exposition: str) -> Samples:
    """Every sample of a Prometheus text exposition, parsed by prometheus_client's parser."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


@pytest.mark.parametrize("fake_slack", [{"update_limit": (2, 1.0)}], indirect=True)
async def test_metrics_count_an_answer_its_first_text_its_writes_and_slacks_429s(
    fake_settings: Settings, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    # Slack allows 2 edits a second here while the bot's budget believes in 10: it meets 429s.
    settings = slack_settings(fake_settings, fake_slack, slack_update_rate=600)
    words = [f"word{n} " for n in range(40)]
    fake_openai.reply(*words, "[1]", interval=0.02)
    async with running_bot(settings, fake_slack) as bot:
        await bot.core.store.set_api_key("slack:T1", FAKE_KEY, set_by="UADMIN")
        asked = await fake_slack.say("T1", CHANNEL, "UALICE", f"<@UBOTT1> {VACATION}")
        await bot.idle()
        status, exposition = await get(f"{bot.url}/metrics")

    [answer] = fake_slack.bot_messages(CHANNEL, asked.ts)
    assert "word39" in answer.text and answer.buttons  # the answer ended done
    assert status == 200
    found = samples(exposition)
    assert value(found, "answerbot_answers_total", platform="slack", outcome="done") == 1
    assert value(found, "answerbot_answers_total", platform="slack", outcome="failed") == 0
    assert value(found, "answerbot_first_text_seconds_count", platform="slack") == 1
    posts = fake_slack.count("chat.postMessage", status=200)
    edits = fake_slack.count("chat.update", status=200)
    assert posts >= 1 and edits >= 1
    assert value(found, "answerbot_platform_writes_total", platform="slack", kind="post") == posts
    assert value(found, "answerbot_platform_writes_total", platform="slack", kind="edit") == edits
    limited = fake_slack.count("chat.update", status=429)
    assert limited >= 1
    assert value(found, "answerbot_platform_rate_limited_total", platform="slack") == limited
    # The model's answer and the search were timed; the budget waits too.
    assert value(found, "answerbot_model_seconds_count", call="answer") == 1
    assert value(found, "answerbot_model_first_token_seconds_count") == 1
    assert value(found, "answerbot_retrieval_seconds_count") == 1
    waits = [v for (name, _), v in found.items() if name == "answerbot_budget_wait_seconds_count"]
    assert sum(waits) >= posts + edits
    # Nothing says who asked, where: no workspace, channel or user in any label.
    labels = {label for (_, pairs) in found for _, label in pairs}
    for private in ("T1", CHANNEL, "UALICE", asked.ts):
        assert not any(private in label for label in labels)
        assert private not in exposition


async def test_readyz_is_ready_with_its_checks_then_names_the_database_once_it_is_gone(
    fake_settings: Settings, fake_slack: FakeSlack
) -> None:
    settings = slack_settings(fake_settings, fake_slack)
    async with running_bot(settings, fake_slack) as bot, aiohttp.ClientSession() as session:
        async with session.get(f"{bot.url}/readyz") as response:
            assert response.status == 200
            ready = await response.json()
        await bot.core.store.close()  # as a database that went away
        async with session.get(f"{bot.url}/readyz") as response:
            assert response.status == 503
            failing = await response.json()
        async with session.get(f"{bot.url}/healthz") as response:
            assert response.status == 200  # alive all the same: a restart cures nothing

    assert ready == {
        "status": "ready",
        "failing": [],
        "checks": {"database": "ok", "index": "ok"},
    }
    assert failing["status"] == "failing"
    assert failing["failing"] == ["database"]
    assert failing["checks"]["index"] == "ok"
    assert failing["checks"]["database"] != "ok"


async def test_bot_run_answers_readyz_and_metrics_and_logs_one_json_object_a_line(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    write_knowledge(tmp_path / "knowledge")
    settings = {
        "SLACK_API_URL": fake_slack.api_url,
        "SLACK_BOT_TOKEN": fake_slack.teams["T1"].token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "LOG_FORMAT": "json",
    }
    async with bot_run(tmp_path, settings) as bot:
        ready_status, ready = await get(f"{bot.url}/readyz")
        metrics_status, exposition = await get(f"{bot.url}/metrics")
        assert await bot.stop() == 0

    assert ready_status == 200, ready
    assert '"database": "ok"' in ready and '"index": "ok"' in ready
    assert metrics_status == 200
    found = samples(exposition)
    assert value(found, "answerbot_answers_total", platform="slack", outcome="done") == 0
    lines = bot.log.read_text().splitlines()
    assert lines
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
    assert any(r["message"].startswith("serving slack (http)") for r in records)
    for secret in (fake_slack.teams["T1"].token, SIGNING_SECRET):
        assert secret not in "\n".join(lines)
