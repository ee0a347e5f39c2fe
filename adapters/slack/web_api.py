"""Calling Slack's Web API: one call at a time through slack_sdk, its failures turned into the
bot's error tree (a 429 keeps its Retry-After for the editor's budget; an outage, worth another
try later, is `PlatformUnavailable`), and the text escaping Slack applies to what people type."""

from __future__ import annotations

from collections.abc import Awaitable

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.errors import PlatformError, PlatformRateLimited, PlatformUnavailable
from bot.retry_after import retry_after

DEFAULT_RETRY_AFTER = 1.0  # seconds, when a 429 carries no Retry-After header
HTTP_OK = 200  # Slack refuses with 200 and an error code, except for 429s and outages
HTTP_SERVER_ERROR = 500
# Error codes Slack answers when the fault is on its side and the same call may work later (the
# chat.* method docs: "the service is temporarily unavailable", "internal update failure", ...);
# an HTTP 5xx is one whatever its body says.
TRANSIENT_ERRORS = frozenset(
    {
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "update_failed",
        "team_added_to_org",
        "external_channel_migrating",
    }
)
# Slack escapes these three in message and command text.
SLACK_ESCAPES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))


def unescape(text: str) -> str:
    """Text as the person typed it (Slack sends `<`, `>` and `&` escaped)."""
    for escaped, plain in SLACK_ESCAPES:
        text = text.replace(escaped, plain)
    return text


class SlackRefused(PlatformError):
    """Slack refused a call for good; `code` is its error code (None when it gave none)."""

    def __init__(self, detail: str, code: str | None) -> None:
        super().__init__(detail)
        self.code = code


def platform_error(method: str, error: SlackApiError) -> PlatformError:
    """A slack_sdk failure as the bot's error; 429 keeps its Retry-After for the budget."""
    response = error.response
    data = getattr(response, "data", None)
    code = data.get("error") if isinstance(data, dict) else None
    # A body that is no JSON (a proxy's error page) comes with aiohttp's response instead.
    status = int(getattr(response, "status_code", None) or getattr(response, "status", 0) or 0)
    if status == 429 or code == "ratelimited":
        asked = retry_after(getattr(response, "headers", None) or {})
        wait = DEFAULT_RETRY_AFTER if asked is None else asked
        return PlatformRateLimited(wait, f"{method} rate limited; retry after {wait}s")
    what = f"HTTP {status}, {code}" if code and status != HTTP_OK else code or f"HTTP {status}"
    if status >= HTTP_SERVER_ERROR or code in TRANSIENT_ERRORS:
        return PlatformUnavailable(f"{method} failed: {what}")
    return SlackRefused(f"{method} failed: {what}", code if isinstance(code, str) else None)


async def call_slack(method: str, call: Awaitable[AsyncSlackResponse]) -> AsyncSlackResponse:
    """Await one Web API call, raising only `PlatformError` (or its `PlatformRateLimited` and
    `PlatformUnavailable`)."""
    try:
        return await call
    except SlackApiError as error:
        raise platform_error(method, error) from None
    except (TimeoutError, aiohttp.ClientError) as error:
        raise PlatformUnavailable(f"{method} failed: {type(error).__name__}") from None
