"""The fake Slack Web API catches what real Slack would refuse, so end-to-end tests can trust it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import FakeSlack


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
