"""The fake Slack Web API catches what real Slack would refuse, so end-to-end tests can trust it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import FakeSlack, views


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(update_limit=(2, 60.0), max_text=100)  # refused calls count too
    fake.add_team("T1")
    fake.add_team("T2")
    fake.user_says("T1", "C1", "UALICE", "hello")
    await fake.start()
    yield fake
    await fake.close()


def client(fake: FakeSlack, team: str = "T1") -> AsyncWebClient:
    return AsyncWebClient(token=fake.teams[team].token, base_url=fake.api_url)


async def test_calls_outside_the_spec_are_recorded(fake: FakeSlack) -> None:
    web = client(fake)
    for method, args in (
        ("chat.postMessage", {"text": "no channel"}),
        ("chat.postMessage", {"channel": "C1", "text": "x", "thred_ts": "1"}),
        ("chat.postMesage", {"channel": "C1", "text": "typo"}),
    ):
        with contextlib.suppress(SlackApiError):
            await web.api_call(method, json=args)
    assert fake.violations == [
        "chat.postMessage: required argument channel missing",
        "chat.postMessage: unknown argument thred_ts",
        "chat.postMesage: not a Slack Web API method",
    ]


async def test_workspaces_limits_and_lengths_are_enforced(fake: FakeSlack) -> None:
    with pytest.raises(SlackApiError, match="channel_not_found"):
        await client(fake, "T2").chat_postMessage(channel="C1", text="not my workspace")
    posted = await client(fake).chat_postMessage(channel="C1", text="hi")
    with pytest.raises(SlackApiError, match="msg_too_long"):
        await client(fake).chat_update(channel="C1", ts=posted["ts"], text="x" * 101)
    await client(fake).chat_update(channel="C1", ts=posted["ts"], text="edited")
    with pytest.raises(SlackApiError) as limited:
        await client(fake).chat_update(channel="C1", ts=posted["ts"], text="again")
    assert limited.value.response.status_code == 429
    assert float(limited.value.response.headers["Retry-After"]) > 0
    assert fake.messages[("C1", posted["ts"])].history == ["hi", "edited"]
    assert fake.violations == []


MODAL = {
    "type": "modal",
    "title": {"type": "plain_text", "text": "A form"},
    "submit": {"type": "plain_text", "text": "Save"},
    "blocks": [
        {
            "type": "input",
            "block_id": "b",
            "label": {"type": "plain_text", "text": "Field"},
            "element": {"type": "plain_text_input", "action_id": "a"},
        }
    ],
}


async def test_views_open_takes_each_trigger_once_from_its_own_workspace(fake: FakeSlack) -> None:
    trigger = fake.issue_trigger("T1", "UALICE")
    with pytest.raises(SlackApiError, match="invalid_arguments"):
        await client(fake, "T2").views_open(trigger_id=trigger, view=MODAL)
    trigger = fake.issue_trigger("T1", "UALICE")
    opened = await client(fake).views_open(trigger_id=trigger, view=MODAL)
    assert opened["view"]["id"] in fake.views and opened["view"]["team_id"] == "T1"
    [view] = fake.open_views("UALICE")
    assert view.inputs() == {"b": "a"}
    with pytest.raises(SlackApiError, match="invalid_arguments"):  # already exchanged
        await client(fake).views_open(trigger_id=trigger, view=MODAL)
    with pytest.raises(SlackApiError, match="invalid_arguments"):
        await client(fake).views_open(trigger_id="123.made.up", view=MODAL)
    assert fake.violations == []


async def test_views_open_refuses_what_slack_refuses(
    fake: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    too_long = {**MODAL, "title": {"type": "plain_text", "text": "A title past 24 characters"}}
    with pytest.raises(SlackApiError, match="invalid_arguments"):
        await client(fake).views_open(trigger_id=fake.issue_trigger("T1", "U1"), view=too_long)
    assert fake.violations == ["views.open: title text must be 1-24 characters"]
    fake.violations.clear()
    monkeypatch.setattr(views, "TRIGGER_LIFETIME", -1.0)
    with pytest.raises(SlackApiError, match="expired_trigger_id"):
        await client(fake).views_open(trigger_id=fake.issue_trigger("T1", "U1"), view=MODAL)
