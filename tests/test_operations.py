"""The operator's endpoints (adapters/operations.py, bot/readiness.py): the web chat's login does
not stand in a probe's way, METRICS=false turns /metrics off, and a failing check says what
failed without the error's text (which may quote a database URL with its password)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from adapters.operations import add_operations_routes
from bot.metrics import Metrics
from bot.readiness import Check, Readiness
from bot.settings import Settings
from tests.bot_process import bot_run

WEB_PASSWORD = "correct-horse-battery-staple-41"
DATABASE_URL = "postgresql://answerbot:hunter2-password@db.internal:5432/answerbot"


@dataclass
class FakeCore:
    """What the endpoints use of the core."""

    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    readiness: Readiness = field(default_factory=Readiness)

    async def ready(self) -> list[Check]:
        return await self.readiness.check()


@asynccontextmanager
async def served(core: FakeCore) -> AsyncIterator[str]:
    app = web.Application()
    add_operations_routes(app, core, ["web"])  # type: ignore[arg-type]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def test_the_web_chats_login_does_not_guard_healthz_readyz_or_metrics(
    tmp_path: Path,
) -> None:
    (tmp_path / "knowledge").mkdir()
    (tmp_path / "knowledge" / "relay.md").write_text("# Relay\n\nThe relay listens on 7443.\n")
    async with bot_run(tmp_path, {"WEB_PASSWORD": WEB_PASSWORD}) as bot:
        async with aiohttp.ClientSession() as browser:  # no login cookie
            async with browser.get(f"{bot.url}/") as page:
                assert page.status == 401  # the chat asks for the login
            statuses = {}
            for path in ("/healthz", "/readyz", "/metrics"):
                async with browser.get(f"{bot.url}{path}") as response:
                    statuses[path] = response.status
                    text = await response.text()
                    assert WEB_PASSWORD not in text
        assert await bot.stop() == 0
    assert statuses == {"/healthz": 200, "/readyz": 200, "/metrics": 200}


async def test_metrics_false_turns_metrics_off_and_leaves_the_probes(
    fake_settings: Settings,
) -> None:
    core = FakeCore(fake_settings.model_copy(update={"metrics": False}))
    async with served(core) as url, aiohttp.ClientSession() as session:
        for path, status in (("/metrics", 404), ("/healthz", 200), ("/readyz", 200)):
            async with session.get(f"{url}{path}") as response:
                assert response.status == status, path


async def test_a_failing_check_is_named_without_the_errors_text(fake_settings: Settings) -> None:
    core = FakeCore(fake_settings, readiness=Readiness(timeout=0.2))

    async def database() -> None:
        raise OSError(f"could not connect to {DATABASE_URL}")

    async def redis() -> None:
        await asyncio.sleep(10)  # a server that never answers

    async def index() -> str | None:
        return None

    core.readiness.add("database", database)
    core.readiness.add("index", index)
    core.readiness.add("redis", redis)
    async with (
        served(core) as url,
        aiohttp.ClientSession() as session,
        session.get(f"{url}/readyz") as response,
    ):
        assert response.status == 503
        text = await response.text()
        body = await response.json()
    assert body["status"] == "failing"
    assert body["failing"] == ["database", "redis"]
    assert body["checks"]["index"] == "ok"
    assert body["checks"]["redis"] == "no answer within 0.2 s"
    assert "OSError" in body["checks"]["database"]
    for leaked in ("hunter2-password", "db.internal", "answerbot:"):
        assert leaked not in text
