"""Calling Slack's Web API: one call at a time through slack_sdk, its failures turned into the
bot's error tree (a 429 keeps its Retry-After for the editor's budget), and the text escaping
Slack applies to what people type."""

from __future__ import annotations

from collections.abc import Awaitable

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.errors import PlatformError, PlatformRateLimited
from bot.retry_after import retry_after

DEFAULT_RETRY_AFTER = 1.0  # seconds, when a 429 carries no Retry-After header
# Slack escapes these three in message and command text.
SLACK_ESCAPES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))


def unescape(text: str) -> str:
    """Text as the person typed it (Slack sends `<`, `>` and `&` escaped)."""
    for escaped, plain in SLACK_ESCAPES:
        text = text.replace(escaped, plain)
    return text


def platform_error(method: str, error: SlackApiError) -> PlatformError:
    """A slack_sdk failure as the bot's error; 429 keeps its Retry-After for the budget."""
    response = error.response
    code = response.get("error") if isinstance(response.data, dict) else None
    if response.status_code == 429 or code == "ratelimited":
        asked = retry_after(response.headers or {})
        wait = DEFAULT_RETRY_AFTER if asked is None else asked
        return PlatformRateLimited(wait, f"{method} rate limited; retry after {wait}s")
    return PlatformError(f"{method} failed: {code or response.status_code}")


async def call_slack(method: str, call: Awaitable[AsyncSlackResponse]) -> AsyncSlackResponse:
    """Await one Web API call, raising only `PlatformError` (or `PlatformRateLimited`)."""
    try:
        return await call
    except SlackApiError as error:
        raise platform_error(method, error) from None
    except (TimeoutError, aiohttp.ClientError) as error:
        raise PlatformError(f"{method} failed: {type(error).__name__}") from None
