"""The Discord adapter under test: real discord.py, the loopback fake Discord, a real store.

`DiscordRig` runs `run_discord` against `FakeDiscord` with two servers (an admin and a member in
each) and a stand-in core whose conversations answer by a script, until the lead's real core is
wired in; the key admin checks keys the way `bot/keys.py` does, minus the network.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.discord import run_discord
from bot.errors import InputError, InvalidApiKey, ModelUnavailable
from bot.settings import Settings
from bot.store import Store
from bot.surface import Final, Surface
from bot.vault import Vault, last4, load_master_key
from tests.fake_discord import MANAGE_GUILD, MEMBER_PERMISSIONS, FakeDiscord

GOOD_KEY = "sk-test-abcdefghijklmnop1234"
BAD_KEY = "sk-revoked-0000000000000000"
PLACEHOLDER = "…"


@dataclass
class Call:
    thread_key: str
    workspace: str
    question: str
    author: str | None
    history: list[str]


@dataclass
class ScriptedConversations:
    """Answers like the core does: placeholder, streamed edits, stored exchange, final write."""

    store: Store
    chunks: Callable[[str], list[str]] = lambda question: [f"Answer to: {question}"]
    fail_after: int | None = None  # chunks shown before the model "fails"
    calls: list[Call] = field(default_factory=list)

    async def reply(
        self,
        *,
        surface: Surface,
        thread_key: str,
        workspace: str,
        question: str,
        author: str | None = None,
        event_id: str | None = None,
    ) -> Any:
        if event_id is not None and not await self.store.claim_event(event_id):
            return None
        history = [m.text for m in await self.store.thread_messages(thread_key)]
        self.calls.append(Call(thread_key, workspace, question, author, history))
        message_id = await surface.post(PLACEHOLDER)
        text = ""
        for number, chunk in enumerate(self.chunks(question)):
            if self.fail_after is not None and number == self.fail_after:
                await surface.edit(message_id, text + "\n\n⚠️ The language model failed.")
                return None
            text += chunk
            await surface.edit(message_id, text)
        answer_id = await self.store.record_exchange(
            thread_key=thread_key,
            workspace=workspace,
            question=question,
            answer=text,
            sources=[],
            status="done",
            author=author,
        )
        await surface.edit(message_id, text + "\n\nSources: [1] guide.md", final=Final(answer_id))
        return answer_id


@dataclass
class FakeKeys:
    """KeyAdmin's contract: validate, store sealed, report the last 4 characters."""

    store: Store

    async def set(self, workspace: str, key: str, *, by: str) -> str:
        key = key.strip()
        if not key:
            raise InputError("The key was empty.")
        if key == BAD_KEY:
            raise InvalidApiKey()
        if not key.startswith("sk-"):
            raise ModelUnavailable()
        await self.store.set_api_key(workspace, key, set_by=by)
        return last4(key)

    async def clear(self, workspace: str) -> bool:
        return await self.store.delete_api_key(workspace)

    async def status(self, workspace: str) -> str | None:
        key = await self.store.get_api_key(workspace)
        return last4(key) if key else None


@dataclass
class FakeCore:
    settings: Settings
    store: Store
    conversations: Any
    keys: Any


@dataclass
class Server:
    guild_id: str
    channel_id: str
    admin: str
    member: str

    @property
    def workspace(self) -> str:
        return f"discord:{self.guild_id}"


class DiscordRig:
    def __init__(self, fake: FakeDiscord, tmp_path: Path) -> None:
        self.fake = fake
        self.tmp_path = tmp_path
        self.servers: list[Server] = []
        for name in ("alpha", "beta"):
            admin, member = fake.add_user(f"{name}-admin"), fake.add_user(f"{name}-member")
            guild_id, channel_id = fake.add_guild(
                name, {admin: MANAGE_GUILD | MEMBER_PERMISSIONS, member: MEMBER_PERMISSIONS}
            )
            self.servers.append(Server(guild_id, channel_id, admin, member))
        self._task: asyncio.Task[None] | None = None

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": self.tmp_path / "data",
            "discord_token": self.fake.token,
            "discord_api_url": self.fake.api_url,
            "discord_gateway_url": self.fake.gateway_url,
            "discord_guild_ids": [s.guild_id for s in self.servers],
            **overrides,
        }
        return Settings(_env_file=None, **values)

    async def open_store(self, settings: Settings) -> Store:
        vault = Vault(load_master_key(None, settings.data_dir))
        return await Store.open(settings.database_path, vault)

    async def start(self, core: Any) -> None:
        self.fake.ready.clear()
        self._task = asyncio.create_task(run_discord(core.settings, core))
        ready = asyncio.create_task(self.fake.ready.wait())
        done, _ = await asyncio.wait({ready, self._task}, timeout=30, return_when="FIRST_COMPLETED")
        if self._task in done:
            ready.cancel()
            self._task.result()  # raises what stopped the bot
        assert ready in done, "the bot never identified"

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


async def rig_with_core(
    fake: FakeDiscord, tmp_path: Path, **overrides: Any
) -> AsyncIterator[tuple[DiscordRig, FakeCore]]:
    rig = DiscordRig(fake, tmp_path)
    settings = rig.settings(**overrides)
    store = await rig.open_store(settings)
    core = FakeCore(settings, store, ScriptedConversations(store), FakeKeys(store))
    try:
        await rig.start(core)
        yield rig, core
    finally:
        await rig.stop()
        await store.close()
