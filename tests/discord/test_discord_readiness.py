"""/readyz of a Discord bot: not ready while the gateway has not sent READY (the bot would miss
every question meanwhile), ready once it has."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from adapters.discord.run import run_discord
from adapters.operations import add_operations_routes
from bot.core import Core
from bot.settings import Settings
from tests.discord.discord_rig import KNOWLEDGE, Server, discord_settings
from tests.fakes.discord import FakeDiscord

POLLS = 400  # tries of 0.05 s for a state the bot reaches by itself (a failure, never a pass)


@asynccontextmanager
async def operations(core: Core) -> AsyncIterator[str]:
    """/healthz, /readyz and /metrics for `core` on a loopback port, as `bot run` serves them."""
    app = web.Application()
    add_operations_routes(app, core, ["discord"])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def readyz(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/readyz") as response:
        return response.status, await response.json()


async def until(url: str, status: int) -> dict[str, Any]:
    for _ in range(POLLS):
        got, body = await readyz(url)
        if got == status:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"/readyz never answered {status}: {body}")


async def test_readyz_waits_for_the_gateways_ready_and_fails_again_when_it_drops(
    fake: FakeDiscord, servers: list[Server], fake_settings: Settings
) -> None:
    settings = discord_settings(fake_settings, fake)
    settings.knowledge_dir.mkdir(parents=True, exist_ok=True)
    for name, text in KNOWLEDGE.items():
        (settings.knowledge_dir / name).write_text(text)
    core = await Core.open(settings)
    await core.knowledge.refresh()
    fake.hold_ready = asyncio.Event()
    task = asyncio.create_task(run_discord(settings, core))
    try:
        async with operations(core) as url:
            for _ in range(POLLS):
                if fake.identifies:
                    break
                await asyncio.sleep(0.05)
            assert fake.identifies == 1  # identified: the gateway now holds READY back
            status, waiting = await readyz(url)
            assert status == 503
            assert waiting["failing"] == ["discord"]
            assert "READY" in waiting["checks"]["discord"]

            fake.hold_ready.set()
            ready = await until(url, 200)
            assert ready["checks"] == {"database": "ok", "index": "ok", "discord": "ok"}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await core.close()
