"""The Discord end-to-end rig: `run_discord` with the real core, against the loopback fake Discord
(two servers, an admin and a member in each) and, through the core, the fake OpenAI endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from adapters.discord.run import run_discord
from bot.core import Core
from bot.settings import Settings
from tests.fakes.discord import MANAGE_GUILD, MEMBER_PERMISSIONS, FakeDiscord

KNOWLEDGE = {
    "deploy.md": (
        "# Deploying\n\n"
        "Deploy with `make release` from the main branch; the pipeline runs the tests first and "
        "rolls back on a failed health check.\n"
    ),
    "vacation.md": (
        "# Vacation policy\n\n"
        "Employees get 25 days of paid vacation per year. Request vacation in the HR portal "
        "at least two weeks ahead.\n"
    ),
}
# Generous for tests; the fake enforces the same budget, so 429s come only where a test asks.
EDIT_RATE, EDIT_WINDOW = 20, 1.0


@dataclass
class Server:
    guild_id: str
    channel_id: str
    admin: str
    member: str

    @property
    def workspace(self) -> str:
        return f"discord:{self.guild_id}"


def add_servers(fake: FakeDiscord, *, shards: int | None = None) -> list[Server]:
    """Servers alpha and beta; with `shards`, alpha on shard 0 of them and beta on shard 1."""
    servers = []
    for index, name in enumerate(("alpha", "beta")):
        admin, member = fake.add_user(f"{name}-admin"), fake.add_user(f"{name}-member")
        guild_id, channel_id = fake.add_guild(
            name,
            {admin: MANAGE_GUILD | MEMBER_PERMISSIONS, member: MEMBER_PERMISSIONS},
            shard=None if shards is None else (index, shards),
        )
        servers.append(Server(guild_id, channel_id, admin, member))
    return servers


def finished_reply(fake: FakeDiscord, question: dict[str, Any]) -> dict[str, Any] | None:
    """The bot's reply to `question` once it carries its feedback buttons (the end state)."""
    for message in fake.channel_messages(question["channel_id"]):
        reference = message.get("message_reference") or {}
        if (
            message["author"]["id"] == fake.bot_id
            and str(reference.get("message_id")) == question["id"]
            and message.get("components")
        ):
            return message
    return None


def discord_settings(base: Settings, fake: FakeDiscord, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "discord_token": SecretStr(fake.token),
        "discord_api_url": fake.api_url,
        "discord_gateway_url": fake.gateway_url,
        "discord_guild_ids": list(fake.guilds),
        "discord_edit_rate": EDIT_RATE,
        "discord_edit_window": EDIT_WINDOW,
        **overrides,
    }
    return base.model_copy(update=values)


@dataclass
class RunningBot:
    settings: Settings
    core: Core
    task: asyncio.Task[None]


@asynccontextmanager
async def running_bot(settings: Settings, fake: FakeDiscord) -> AsyncIterator[RunningBot]:
    """A bot process: its own core on the settings' database, connected to the fake Discord."""
    settings.knowledge_dir.mkdir(parents=True, exist_ok=True)
    for name, text in KNOWLEDGE.items():
        (settings.knowledge_dir / name).write_text(text)
    core = await Core.open(settings)
    await core.knowledge.refresh()
    fake.ready.clear()
    task = asyncio.create_task(run_discord(settings, core))
    try:
        ready = asyncio.create_task(fake.ready.wait())
        done, _ = await asyncio.wait({ready, task}, timeout=30, return_when="FIRST_COMPLETED")
        if task in done:
            ready.cancel()
            task.result()  # raises what stopped the bot
        assert ready in done, "the bot never identified"
        yield RunningBot(settings, core, task)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await core.close()
