"""Running the Discord client: pointed at DISCORD_API_URL and DISCORD_GATEWAY_URL, connected
with a capped, jittered backoff (Discord resets a token after too many identifies), and with
modal values (an API key typed into /setkey's form) kept out of discord.py's debug log."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.discord.client import build_discord_client
from adapters.discord.shards import SHARD_ERRORS
from bot.errors import ConfigError
from bot.settings import Settings

if TYPE_CHECKING:  # types only: importing an adapter loads no index or model
    from bot.core import Core

log = logging.getLogger(__name__)

RESTART_BASE_SECONDS = 5.0  # first wait after a failed connection
RESTART_CAP_SECONDS = 300.0  # longest wait between connection attempts
STABLE_AFTER_SECONDS = 600.0  # a connection that lived this long resets the backoff
MODAL_SUBMIT = 5  # INTERACTION_CREATE type of a modal submit


class ModalValueFilter(logging.Filter):
    """Drops modal values from discord.py's gateway DEBUG dump of INTERACTION_CREATE.

    Apart from `bot.logs.RedactingFilter` (known values, secret shapes) because the key typed
    into /setkey's form is dumped here before the bot has seen, checked or registered it, and it
    may have no known shape: only the payload's structure says it is a secret.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(map(_is_modal_submit, record.args)):
            record.args = tuple(_without_values(arg) for arg in record.args)
        return True


def _is_modal_submit(payload: object) -> bool:
    if not isinstance(payload, dict) or payload.get("t") != "INTERACTION_CREATE":
        return False
    data = payload.get("d")
    return isinstance(data, dict) and data.get("type") == MODAL_SUBMIT


def _without_values(payload: object) -> object:
    if not _is_modal_submit(payload):
        return payload
    assert isinstance(payload, dict)
    return {**payload, "d": {**payload["d"], "data": "[modal values redacted]"}}


def install_log_filter() -> None:
    logger = logging.getLogger("discord.gateway")
    if not any(isinstance(f, ModalValueFilter) for f in logger.filters):
        logger.addFilter(ModalValueFilter())


@contextmanager
def discord_endpoints(settings: Settings) -> Iterator[None]:
    """Point discord.py at DISCORD_API_URL and DISCORD_GATEWAY_URL while inside.

    discord.py has no setting for either: REST URLs are built from `Route.BASE`, and a client
    that is told its shard count connects to `DiscordWebSocket.DEFAULT_GATEWAY` without asking
    /gateway/bot (the bot always tells it: none, or DISCORD_SHARD_COUNT).
    """
    base, gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    Route.BASE = settings.discord_api_url
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)
    try:
        yield
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = base, gateway


def restart_delay(attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before connection attempt `attempt` (1-based): doubling, capped, jittered."""
    ceiling = min(RESTART_CAP_SECONDS, RESTART_BASE_SECONDS * 2.0 ** max(attempt - 1, 0))
    return ceiling * (rng or random).uniform(0.5, 1.0)


async def run_discord(
    settings: Settings,
    core: Core,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    stop: asyncio.Event | None = None,
    **options: Any,
) -> None:
    """Run the Discord bot until `stop` is set (or the task is cancelled); reconnect with
    backoff, never in a tight loop.

    `stop` is the graceful way: the client closes while its gateway connection still reads
    events, so answers in flight get SHUTDOWN_GRACE_SECONDS and a question arriving meanwhile
    is answered with a "restarting" note. A cancel stops reading at once; Discord never
    delivers those questions again.
    """
    if settings.discord_token is None:
        raise ConfigError("DISCORD_TOKEN is not set.")
    token = settings.discord_token.get_secret_value()
    install_log_filter()
    loop = asyncio.get_running_loop()
    attempt = 0
    current: list[discord.Client] = []  # the client of this attempt, for the readiness check

    async def connected() -> str | None:
        return gateway_problem(current[-1] if current else None)

    core.readiness.add("discord", connected)
    with discord_endpoints(settings):
        while True:
            client = build_discord_client(settings, core, **options)
            current[:] = [client]
            started = loop.time()
            try:
                async with client:
                    closer = asyncio.create_task(_close_when(stop, client)) if stop else None
                    try:
                        await client.start(token, reconnect=True)
                    finally:
                        if closer is not None:
                            closer.cancel()
                return
            except discord.LoginFailure:
                raise ConfigError("Discord rejected DISCORD_TOKEN.") from None
            except discord.PrivilegedIntentsRequired:
                raise ConfigError("Discord refused the bot's intents.") from None
            except Exception as error:
                if isinstance(error, discord.ConnectionClosed) and error.code in SHARD_ERRORS:
                    raise ConfigError(SHARD_ERRORS[error.code]) from None
                if loop.time() - started > STABLE_AFTER_SECONDS:
                    attempt = 0
                attempt += 1
                delay = restart_delay(attempt)
                log.warning(
                    "Discord connection failed (%s); retrying in %.0fs",
                    type(error).__name__,
                    delay,
                    exc_info=True,
                )
            await sleep(delay)


def gateway_problem(client: discord.Client | None) -> str | None:
    """None when `client` has had READY on every shard it runs and each one's socket is open;
    else why not (the shards by number: no guild or user is named)."""
    if client is None or client.is_closed():
        return "not connected to the gateway"
    if not client.is_ready():
        # Set once READY came on every shard this process runs (discord.py waits for all).
        return "waiting for the gateway's READY"
    if isinstance(client, discord.AutoShardedClient):
        down = sorted(shard_id for shard_id, shard in client.shards.items() if shard.is_closed())
        if down:
            return f"gateway connection down on shard {', '.join(map(str, down))}"
    elif client.ws is None or not client.ws.open:
        return "gateway connection down"
    elif client.ws.session_id is None:
        # A new session after a reconnect that could not resume: READY has yet to come.
        return "waiting for the gateway's READY"
    return None


async def _close_when(stop: asyncio.Event, client: discord.Client) -> None:
    await stop.wait()
    await client.close()  # drains answers, then ends the gateway connection and `start`
