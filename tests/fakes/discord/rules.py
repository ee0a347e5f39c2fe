"""Discord's rules as the fake Discord enforces them: the per-channel create/edit budget (429s
and X-RateLimit headers shaped like Discord's), allowed mentions that must ping no one, the
2,000-character limit, the message flags each kind of write may set, the link previews Discord's
crawler makes, and Discord's JSON error bodies."""

from __future__ import annotations

import json
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import web

SUPPRESS_EMBEDS = 1 << 2
EPHEMERAL = 1 << 6
SUPPRESS_NOTIFICATIONS = 1 << 12
IS_VOICE_MESSAGE = 1 << 13
IS_COMPONENTS_V2 = 1 << 15
MANAGE_GUILD = 1 << 5
MAX_CONTENT = 2000
ACK_DEADLINE_SECONDS = 3.0  # an interaction not answered by then is gone


class ChannelBudget:
    """Discord's per-channel message create/edit limit: `rate` writes per `window` seconds."""

    def __init__(self, rate: int, window: float, clock: Callable[[], float]) -> None:
        self.rate, self.window, self.clock = rate, window, clock
        self.writes: dict[str, deque[float]] = {}

    def spend(self, channel_id: str) -> float | None:
        """Charge one write: None if allowed, else the seconds until one would be."""
        now = self.clock()
        window = self.writes.setdefault(channel_id, deque())
        while window and window[0] <= now - self.window:
            window.popleft()
        if len(window) >= self.rate:
            return round(window[0] + self.window - now, 3)
        window.append(now)
        return None

    def limited(self, channel_id: str, retry_after: float) -> web.Response:
        """The 429 Discord answers a write over the budget with."""
        response = json_response(
            {"message": "You are being rate limited.", "retry_after": retry_after, "global": False},
            status=429,
        )
        response.headers.update(
            {
                "Retry-After": str(max(1, round(retry_after + 0.5))),
                "X-RateLimit-Limit": str(self.rate),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
                "X-RateLimit-Reset-After": f"{retry_after:.3f}",
                "X-RateLimit-Bucket": f"messages-{channel_id}",
                "X-RateLimit-Scope": "user",
                "Via": "1.1 google",
            }
        )
        return response

    def headers(self, channel_id: str) -> dict[str, str]:
        """The X-RateLimit headers of a write the budget allowed."""
        window = self.writes.get(channel_id) or deque([self.clock()])
        reset_after = max(window[0] + self.window - self.clock(), 0.0)
        return {
            "X-RateLimit-Limit": str(self.rate),
            "X-RateLimit-Remaining": str(max(self.rate - len(window), 0)),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": f"messages-{channel_id}",
        }


def mentions_problem(what: str, body: dict[str, Any], *, needs_content: bool) -> str | None:
    """What is wrong with a write's allowed_mentions (the bot must ping no one), or None."""
    mentions = body.get("allowed_mentions")
    if not needs_content and mentions is None:
        return None
    if (
        mentions is None
        or mentions.get("parse")
        or mentions.get("users")
        or mentions.get("roles")
        or mentions.get("replied_user")
    ):
        return f"{what}: allowed_mentions not none: {mentions!r}"
    return None


# The flags a write may set. The OpenAPI spec types `flags` only as an integer (spec.py checks
# that); which bits each endpoint takes is in Discord's docs: Create Message, Execute Webhook
# (an interaction's follow-ups, which may also be ephemeral), the interaction response's message
# data, and Edit Message / Edit Webhook Message, where only SUPPRESS_EMBEDS can be changed (and
# IS_COMPONENTS_V2 set) while the bits already set may be repeated.
SETTABLE_FLAGS = {
    "create": SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | IS_VOICE_MESSAGE | IS_COMPONENTS_V2,
    "followup": SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | IS_COMPONENTS_V2 | EPHEMERAL,
    "callback": (
        SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | IS_VOICE_MESSAGE | IS_COMPONENTS_V2 | EPHEMERAL
    ),
    "edit": SUPPRESS_EMBEDS | IS_COMPONENTS_V2,
}
# What Discord's crawler fetches to preview: a bare http(s) link; <https://...> is never previewed.
_LINK = re.compile(r"(?<!<)\bhttps?://[^\s<>]+")


def flags_problem(what: str, kind: str, flags: int, *, already: int = 0) -> str | None:
    """What is wrong with the flags a write of `kind` sends (over the message's `already`)."""
    refused = flags & ~already & ~SETTABLE_FLAGS[kind]
    if refused:
        return f"{what}: flags {flags} set bits {refused} a {kind} cannot set"
    return None


def previewed_links(content: str) -> list[str]:
    """The links in `content` that Discord's crawler fetches for a preview (unless suppressed)."""
    return [match.rstrip(".,;:!?)]") for match in _LINK.findall(content)]


def json_response(data: Any, *, status: int = 200) -> web.Response:
    # discord.py only parses bodies whose Content-Type is exactly application/json.
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"}
    )


def unknown(message: str, code: int) -> web.Response:
    return json_response({"message": message, "code": code}, status=404)


def invalid() -> web.Response:
    return json_response({"message": "Invalid Form Body", "code": 50035}, status=400)
