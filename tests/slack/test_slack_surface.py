"""SlackSurface against the fake Web API: thread posts and edits in standard Markdown (mrkdwn
where the workspace's Slack refuses it), feedback blocks, and every refusal surfacing as the
bot's error (429s with their Retry-After, outages as `PlatformUnavailable`, neither retried in
hiding)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from adapters.slack.formats import SlackFormats
from adapters.slack.listeners import strip_mention
from adapters.slack.surface import (
    FALLBACK_CHARS,
    MAX_MARKDOWN_CHARS,
    MAX_MESSAGE_BYTES,
    SECTION_TEXT_LIMIT,
    SlackSurface,
)
from adapters.slack.web_api import platform_error
from bot.errors import PlatformError, PlatformRateLimited, PlatformUnavailable
from bot.settings import Settings
from bot.surface import Final
from tests.fakes.slack import FakeSlack

CHANNEL = "C0GENERAL"


SLACK_LIMITS = {"update_limit": (2, 60.0), "post_limit": (2, 60.0)}


def setup_slack(fake: FakeSlack) -> None:
    fake.add_team("T1")


@pytest.fixture
async def surface(fake_slack: FakeSlack) -> SlackSurface:
    parent = fake_slack.user_says("T1", CHANNEL, "UALICE", "a question")
    client = AsyncWebClient(
        token=fake_slack.teams["T1"].token,
        base_url=fake_slack.api_url,
        retry_handlers=[AsyncConnectionErrorRetryHandler()],
    )
    settings = Settings(_env_file=None, slack_update_rate=7, slack_post_rate=3)
    return SlackSurface(
        client, settings, team="T1", channel=CHANNEL, thread_ts=parent.ts, formats=SlackFormats()
    )


async def test_posts_into_the_thread_and_edits_in_place(
    fake_slack: FakeSlack, surface: SlackSurface
) -> None:
    ts = await surface.post("thinking")
    await surface.edit(ts, "the answer")
    parent = next(m for m in fake_slack.messages.values() if m.user == "UALICE")
    [_, answer] = fake_slack.thread(CHANNEL, parent.ts)
    assert answer.ts == ts and answer.thread_ts == parent.ts
    assert answer.history == ["thinking", "the answer"]
    assert answer.markdown and answer.blocks is None and answer.buttons == {}
    assert {call.method: set(call.args) - {"team_id"} for call in fake_slack.calls} == {
        "chat.postMessage": {
            "channel",
            "thread_ts",
            "markdown_text",
            "unfurl_links",
            "unfurl_media",
        },
        "chat.update": {"channel", "ts", "markdown_text"},
    }


async def test_the_final_write_carries_a_markdown_block_and_the_feedback_element(
    fake_slack: FakeSlack, surface: SlackSurface
) -> None:
    long_text = "\n".join(f"line {n} **" + "x" * 60 + "**" for n in range(50))
    ts = await surface.post("thinking")
    await surface.edit(ts, long_text, final=Final(42))
    message = fake_slack.messages[(CHANNEL, ts)]
    assert message.shown == long_text  # as standard Markdown, whole
    # The mrkdwn notification text beside the blocks, cut to what chat.update takes.
    assert message.text.startswith("line 0 *xxx") and len(message.text) <= FALLBACK_CHARS
    assert message.buttons == {"feedback:positive": "good:42", "feedback:negative": "bad:42"}


async def test_where_slack_refuses_them_the_final_write_has_sections_and_thumbs(
    fake_slack: FakeSlack, surface: SlackSurface
) -> None:
    fake_slack.teams["T1"].markdown = fake_slack.teams["T1"].feedback_buttons = False
    long_text = "\n".join(f"line {n} " + "x" * 60 for n in range(50))  # > one section
    assert len(long_text) > SECTION_TEXT_LIMIT
    ts = await surface.post("thinking")
    await surface.edit(ts, long_text, final=Final(42))
    message = fake_slack.messages[(CHANNEL, ts)]
    assert not message.markdown and message.text.startswith("line 0")
    assert message.buttons == {"feedback_up": "42", "feedback_down": "42"}
    sections = [b["text"]["text"] for b in message.blocks or [] if b["type"] == "section"]
    assert len(sections) == 2 and all(len(s) <= SECTION_TEXT_LIMIT for s in sections)
    assert "\n".join(sections) == long_text


async def test_a_failed_answer_gets_no_buttons(
    fake_slack: FakeSlack, surface: SlackSurface
) -> None:
    ts = await surface.post("partial ⚠️ failed", final=Final(None))
    assert fake_slack.messages[(CHANNEL, ts)].buttons == {}


async def test_429_becomes_platform_rate_limited_with_retry_after_and_no_hidden_retry(
    fake_slack: FakeSlack, surface: SlackSurface
) -> None:
    ts = await surface.post("one")
    await surface.edit(ts, "two")
    await surface.edit(ts, "three")
    with pytest.raises(PlatformRateLimited) as limited:
        await surface.edit(ts, "four")
    assert limited.value.retry_after > 1
    assert fake_slack.count("chat.update") == 3  # the SDK did not quietly retry
    await surface.post("five")
    with pytest.raises(PlatformRateLimited):
        await surface.post("six")
    assert fake_slack.count("chat.postMessage") == 3


async def test_other_refusals_become_platform_errors_without_the_token(
    fake_slack: FakeSlack, surface: SlackSurface
) -> None:
    ts = await surface.post("short")
    with pytest.raises(PlatformError) as too_long:
        await surface.edit(ts, "x" * (MAX_MARKDOWN_CHARS + 1))
    assert not isinstance(too_long.value, PlatformRateLimited)
    assert "msg_too_long" in str(too_long.value)
    assert fake_slack.teams["T1"].token not in str(too_long.value)


async def test_an_outage_is_platform_unavailable_and_a_refusal_is_not(
    fake_slack: FakeSlack, surface: SlackSurface
) -> None:
    ts = await surface.post("short")
    fake_slack.outage("chat.update", 60.0)
    with pytest.raises(PlatformUnavailable) as down:
        await surface.edit(ts, "during the outage")
    assert "HTTP 500" in str(down.value)
    assert fake_slack.count("chat.update") == 1  # not retried in hiding either
    with pytest.raises(PlatformError) as refused:
        await surface.post("x" * (MAX_MARKDOWN_CHARS + 1))
    assert not isinstance(refused.value, PlatformUnavailable)


@pytest.mark.parametrize(
    ("status", "body", "unavailable"),
    [
        (200, {"ok": False, "error": "fatal_error"}, True),
        (200, {"ok": False, "error": "service_unavailable"}, True),
        (503, {}, True),  # a proxy's page, no JSON
        (200, {"ok": False, "error": "channel_not_found"}, False),
        (200, {"ok": False, "error": "invalid_auth"}, False),
    ],
)
def test_which_slack_failures_are_outages(
    status: int, body: dict[str, object], unavailable: bool
) -> None:
    response = AsyncSlackResponse(
        client=None,
        http_verb="POST",
        api_url="https://slack.invalid/api/chat.update",
        req_args={},
        data=body,
        headers={},
        status_code=status,
    )
    error = platform_error("chat.update", SlackApiError("failed", response))
    assert isinstance(error, PlatformUnavailable) is unavailable


def test_a_failure_without_a_slack_response_is_still_mapped() -> None:
    # slack_sdk hands over aiohttp's own response when a JSON body does not parse.
    raw = SimpleNamespace(status=502, headers={})
    error = platform_error("chat.update", SlackApiError("failed", raw))
    assert isinstance(error, PlatformUnavailable)
    assert "HTTP 502" in str(error)


def test_budgets_measure_and_render(surface: SlackSurface) -> None:
    assert surface.edit_budget.key == "slack:T1:chat.update"  # shared by the workspace
    assert (surface.edit_budget.rate, surface.post_budget.rate) == (7, 3)
    assert surface.post_budget.key == f"slack:T1:{CHANNEL}:chat.postMessage"  # per channel
    assert surface.measure("é👍") == 3  # characters, an emoji as two (UTF-16)
    assert surface.max_size == MAX_MARKDOWN_CHARS == 12_000
    assert surface.render("**hi** <!here>") == "**hi** <\u2060!here>"  # Markdown, inert


async def test_a_workspace_refusing_markdown_is_measured_as_mrkdwn(
    fake_slack: FakeSlack, surface: SlackSurface
) -> None:
    fake_slack.teams["T1"].markdown = False
    await surface.post("**thinking**")
    assert surface.measure("é") == 2  # bytes, as Slack counts mrkdwn
    assert surface.max_size == MAX_MESSAGE_BYTES < 4000


def test_strip_mention_removes_only_the_bot() -> None:
    assert strip_mention("<@UBOT> how about <@UBOB>?", "UBOT") == "how about <@UBOB>?"
    assert strip_mention("<@UBOT|answerbot>   why\n```a &lt; b```", "UBOT") == "why\n```a < b```"
    assert strip_mention("ask <@UBOT> now", "UBOT") == "ask now"
    assert strip_mention(" <@UBOT> ", "UBOT") == ""


async def test_a_message_sectioned_after_a_refusal_is_edited_in_sections(
    fake_slack: FakeSlack, surface: SlackSurface
) -> None:
    # Laid out for Markdown's 12,000 characters, then refused: it can only go as sections.
    fake_slack.teams["T1"].markdown = False
    long_text = "\n".join(f"line {n} " + "x" * 60 for n in range(120))
    ts = await surface.post(long_text)
    message = fake_slack.messages[(CHANNEL, ts)]
    assert message.shown == long_text and len(message.blocks or []) == 3
    # An edit that fits the text field still replaces the sections (else they would stay).
    await surface.edit(ts, "the answer, split smaller")
    assert message.history[-1] == message.shown == "the answer, split smaller"
