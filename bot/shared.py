"""Redis (REDIS_URL): where replicas share what belongs to a workspace or a channel rather than
to a process: the platforms' rate budgets with their Retry-After pauses
(`bot.streaming.shared_budget`) and the question limits (`bot.shared_limits`).

Owns the connection (checked at start: an unreachable Redis refuses to start, in one line that
names no password), the key prefix, and the outage gate both users go through: when Redis stops
answering while the bot runs, each process falls back to its own in-process budgets and limits,
says so once, and asks Redis again every `RETRY_AFTER_LOSS` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import redis.asyncio
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError
from redis.retry import Retry

from bot.errors import ConfigError
from bot.logs import register_secret
from bot.settings import Settings

log = logging.getLogger(__name__)

# Every key the bot writes starts with this: one Redis (one /db) may serve other programs too.
KEY_PREFIX = "answerbot:"
# Seconds a Redis call may take before it counts as lost: a budget's caller waits this long at
# worst before the process carries on with its own budgets.
TIMEOUT = 2.0
# Seconds a process works on its own after losing Redis before it asks again.
RETRY_AFTER_LOSS = 5.0
# What a lost Redis raises through redis-py (connection refused, reset, timed out).
ERRORS = (RedisError, OSError, TimeoutError)
UNSHARED = (
    "DATABASE_URL is shared but REDIS_URL is unset: each replica spends the platforms' whole "
    "rate budget on its own; set REDIS_URL when running more than one replica."
)


class Shared:
    """The Redis client and whether it is answering (`usable`); `lost`/`back` record outages."""

    def __init__(
        self, client: redis.asyncio.Redis, where: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.client = client
        self.where = where
        self._clock = clock
        self._down_until: float | None = None

    def script(self, lua: str) -> AsyncScript:
        """A Lua script run by its SHA (loaded again if Redis restarted and forgot it)."""
        return self.client.register_script(lua)

    def usable(self) -> bool:
        """Whether to ask Redis now: yes unless it was lost less than RETRY_AFTER_LOSS ago."""
        return self._down_until is None or self._clock() >= self._down_until

    def lost(self, error: BaseException) -> None:
        if self._down_until is None:
            # Once per outage: every budget and question would repeat it otherwise.
            log.warning(
                "Redis at %s stopped answering (%s): this process keeps to its own rate budgets "
                "and question limits until it is back; replicas may together exceed the "
                "platforms' limits meanwhile (their 429s still pause each of them)",
                self.where,
                type(error).__name__,
            )
        self._down_until = self._clock() + RETRY_AFTER_LOSS

    def back(self) -> None:
        if self._down_until is not None:
            self._down_until = None
            log.warning(
                "Redis at %s answers again: budgets and limits are shared again", self.where
            )

    async def close(self) -> None:
        await self.client.aclose()


def address(url: str) -> str:
    """Where a REDIS_URL points, safe to print: scheme, host, port and db; no user or password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        db = parse_qs(parts.query).get("db", ["0"])[0]
        return f"unix://{parts.path}?db={db}"
    db = parts.path.lstrip("/") or "0"
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}/{db}"


async def connect(settings: Settings) -> Shared | None:
    """The deployment's Redis, answering; None when REDIS_URL is unset (state stays in this
    process, with a warning if the database says there are replicas). ConfigError when it
    can't be reached."""
    if settings.redis_url is None:
        if settings.database_url is not None:
            log.warning(UNSHARED)
        return None
    url = settings.redis_url.get_secret_value()
    parts = urlsplit(url)
    passwords = [p for p in (parts.password, *parse_qs(parts.query).get("password", [])) if p]
    register_secret(*passwords)  # a log line may quote it alone
    where = address(url)
    try:
        client = redis.asyncio.from_url(
            url,
            socket_timeout=TIMEOUT,
            socket_connect_timeout=TIMEOUT,
            # One quick retry mends a connection Redis closed while idle; an outage is the
            # gate's job, not a retry loop's.
            retry=Retry(NoBackoff(), 1),
        )
    except ValueError:
        # redis-py's message may quote the URL, password and all.
        raise ConfigError(f"REDIS_URL for {where} is not a valid Redis URL") from None
    try:
        await client.ping()
    except ERRORS as error:
        await client.aclose()
        raise ConfigError(
            f"cannot connect to Redis at {where}: {_reason(error, passwords)}; check REDIS_URL "
            "and that the server runs (or unset REDIS_URL to keep budgets in this process)"
        ) from None
    log.info("rate budgets and question limits are shared through Redis at %s", where)
    return Shared(client, where)


def _reason(error: BaseException, secrets: list[str]) -> str:
    lines = str(error).strip().splitlines()
    reason = lines[0] if lines else type(error).__name__
    for secret in secrets:
        reason = reason.replace(secret, "***")
    return reason
