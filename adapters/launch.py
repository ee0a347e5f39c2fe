"""`bot run`: wires the core into the adapters whose credentials are set, on one HTTP server.

With no platform credentials, the local web chat is served. It is not served next to a platform
adapter: a Slack HTTP-mode server is public, and the web chat would hand anyone who finds it the
operator's model key and the local /setkey form.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from adapters.operations import add_operations_routes
from bot.core import Core
from bot.errors import BotError
from bot.settings import Settings

log = logging.getLogger(__name__)

GRACEFUL = frozenset({"discord"})  # background adapters that stop on `stopping`, not a cancel
END_MARGIN = 15.0  # seconds past the grace for cut-off answers to show their end state


async def serve(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM or until an adapter fails for good."""
    core = await Core.open(settings)
    runner: web.AppRunner | None = None
    tasks: list[asyncio.Task[None]] = []
    stopping = asyncio.Event()  # set at shutdown: adapters that drain gracefully watch it
    try:
        log.info("knowledge: %s", await core.knowledge.refresh_at_start())
        app = web.Application()
        enabled = await _wire(app, settings, core, tasks, stopping)
        # Renews this process's answers in flight; ends those a dead process left behind.
        core.journal.start()
        add_operations_routes(app, core, enabled)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await _listen(runner, settings)
        if "web" in enabled:
            from adapters.web.access import WEB_ACCESS

            # Printed, not logged: the login link is for the operator's terminal, not log files.
            print(app[WEB_ACCESS].start_message(), flush=True)
        log.info("serving %s on %s:%s", ", ".join(enabled), settings.host, settings.port)
        await _until_stopped(tasks)
    finally:
        # Adapters that drain on `stopping` (Discord) get the grace period and a margin for
        # their end states; the rest stop by cancellation and drain in their own cleanup.
        stopping.set()
        graceful = [task for task in tasks if task.get_name() in GRACEFUL and not task.done()]
        if graceful:
            await asyncio.wait(graceful, timeout=settings.shutdown_grace_seconds + END_MARGIN)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if runner is not None:
            await runner.cleanup()
        await core.close()


async def _wire(
    app: web.Application,
    settings: Settings,
    core: Core,
    tasks: list[asyncio.Task[None]],
    stopping: asyncio.Event,
) -> list[str]:
    enabled: list[str] = []

    def background(name: str, work: Coroutine[Any, Any, None]) -> None:
        tasks.append(asyncio.create_task(work, name=name))
        enabled.append(name)

    if settings.slack_enabled:
        from adapters.slack.app import add_slack_routes, build_slack_app, run_socket_mode

        slack_app = build_slack_app(settings, core)
        # Routes in both modes: in Socket Mode they carry only the OAuth install pages (events
        # are never served on HTTP unsigned).
        add_slack_routes(app, slack_app)
        if settings.slack_app_token is not None:
            background("slack (socket mode)", run_socket_mode(settings, slack_app, core.readiness))
        else:
            enabled.append("slack (http)")
    if settings.discord_enabled:
        from adapters.discord.run import run_discord

        background("discord", run_discord(settings, core, stop=stopping))
    if not enabled:
        from adapters.web.routes import add_web_routes

        add_web_routes(app, settings, core)
        enabled.append("web")
    return enabled


async def _listen(runner: web.AppRunner, settings: Settings) -> None:
    """Bind HOST:PORT, or a BotError the `bot` command prints as one line instead of a traceback."""
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
    except OSError as error:
        where = f"port {settings.port} on {settings.host}"
        if error.errno == errno.EADDRINUSE:
            raise BotError(
                f"{where} is already in use; set PORT to another port or stop the other process"
            ) from None
        raise BotError(f"cannot listen on {where}: {error.strerror or error}") from None


async def _until_stopped(tasks: list[asyncio.Task[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    for task in done:
        if task is not waiter and not task.cancelled() and task.exception() is not None:
            log.error("%s stopped: %s", task.get_name(), task.exception())
            raise SystemExit(1)
