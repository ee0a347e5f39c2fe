"""The fake Discord's message flags and link previews, so tests that rely on them can trust them:
a flag a write may not set is refused as Discord refuses it, and links are previewed (fetched)
unless the message suppresses embeds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fakes.discord import EPHEMERAL, FAKE_TOKEN, SUPPRESS_EMBEDS, FakeDiscord

LINK = "https://wiki.intra.example.com/page"
NONE = {"parse": []}


@pytest.fixture
async def discord() -> AsyncIterator[tuple[FakeDiscord, str]]:
    fake = FakeDiscord()
    await fake.start()
    member = fake.add_user("member")
    _, channel_id = fake.add_guild("alpha", {member: 0})
    yield fake, channel_id
    await fake.close()


async def write(fake: FakeDiscord, method: str, path: str, body: dict[str, Any]) -> Any:
    headers = {"Authorization": f"Bot {FAKE_TOKEN}"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, fake.api_url + path, json=body, headers=headers) as response,
    ):
        return response.status, await response.json()


async def test_a_link_is_fetched_for_a_preview_unless_embeds_are_suppressed(
    discord: tuple[FakeDiscord, str],
) -> None:
    fake, channel = discord
    path = f"/channels/{channel}/messages"
    _, plain = await write(
        fake, "POST", path, {"content": f"see {LINK}.", "allowed_mentions": NONE}
    )
    assert fake.crawled == [LINK] and plain["embeds"] == [{"type": "link", "url": LINK}]
    _, quiet = await write(
        fake, "POST", path, {"content": f"see {LINK}2", "allowed_mentions": NONE, "flags": 4}
    )
    assert fake.crawled == [LINK] and quiet["embeds"] == []
    # Suppressing later drops the preview; the link was fetched all the same.
    _, edited = await write(fake, "PATCH", f"{path}/{plain['id']}", {"flags": SUPPRESS_EMBEDS})
    assert edited["embeds"] == [] and edited["flags"] == SUPPRESS_EMBEDS
    assert [(w.kind, w.flags) for w in fake.writes] == [
        ("create", None),
        ("create", SUPPRESS_EMBEDS),
        ("edit", SUPPRESS_EMBEDS),
    ]
    assert fake.violations == []


async def test_flags_a_write_may_not_set_are_refused(discord: tuple[FakeDiscord, str]) -> None:
    fake, channel = discord
    path = f"/channels/{channel}/messages"
    status, _ = await write(
        fake, "POST", path, {"content": "hi", "allowed_mentions": NONE, "flags": EPHEMERAL}
    )
    assert status == 400
    _, message = await write(fake, "POST", path, {"content": "hi", "allowed_mentions": NONE})
    status, _ = await write(fake, "PATCH", f"{path}/{message['id']}", {"flags": EPHEMERAL})
    assert status == 400
    assert len(fake.violations) == 2 and all("cannot set" in v for v in fake.violations)
