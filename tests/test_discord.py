"""The Discord adapter end to end: real discord.py against the loopback fake Discord.

Each test drives the fake's gateway (INTERACTION_CREATE, MESSAGE_CREATE) and checks what a
person in the server would see: the messages, their edits, the buttons, the ephemeral replies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.discord_rig import DiscordRig, FakeCore, rig_with_core
from tests.fake_discord import FakeDiscord


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    await fake.start()
    yield fake
    await fake.close()
    for v in fake.violations:
        print("VIOLATION", v[:1500])
    assert fake.violations == [], "the bot's requests broke Discord's API spec or rules"


@pytest.fixture
async def bot(fake: FakeDiscord, tmp_path: Path) -> AsyncIterator[tuple[DiscordRig, FakeCore]]:
    async for pair in rig_with_core(fake, tmp_path):
        yield pair


def final_message(fake: FakeDiscord, message_id: str | None) -> Any:
    if message_id is None:
        return None
    message = fake.messages[message_id]
    return message if message.get("components") else None


async def test_ask_defers_then_streams_into_the_original_response(
    fake: FakeDiscord, bot: tuple[DiscordRig, FakeCore]
) -> None:
    rig, core = bot
    alpha = rig.servers[0]
    interaction = await fake.slash(
        alpha.guild_id, alpha.channel_id, alpha.member, "ask", question="How do I deploy?"
    )
    message = await fake.wait_for(lambda: final_message(fake, interaction.original_id))
    assert interaction.callbacks[0]["type"] == 5  # deferred inside the 3-second window
    assert message["content"].startswith("Answer to: How do I deploy?")
    assert "Sources: [1] guide.md" in message["content"]
    assert message["edits"] >= 2  # placeholder, then the streamed text, then the final write
    buttons = [c["custom_id"] for row in message["components"] for c in row["components"]]
    call = core.conversations.calls[0]
    assert call.workspace == f"discord:{alpha.guild_id}"
    assert call.author == alpha.member
    assert buttons[0].startswith("feedback:up:") and buttons[1].startswith("feedback:down:")
