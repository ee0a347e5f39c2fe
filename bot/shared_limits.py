"""Question limits shared by replicas through Redis (REDIS_URL): the `bot.limits.Counter` that
counts a person's and a workspace's questions in sliding windows every process sees.

Each key is a sorted set of its questions' times (Redis's clock), trimmed to the window and
expiring with it; one Lua script checks every limit and counts under all or none, so two
replicas taking the last place at once can't both get it. Redis lost while running: this
process counts on its own (`InProcessCounter`) until it answers again (`bot.shared`): a person
may then ask up to the limit once per replica, rather than nobody being answered.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from bot.limits import WINDOW_SECONDS, InProcessCounter, Limit, Refusal
from bot.shared import ERRORS, KEY_PREFIX, Shared

# KEYS: one sorted set per limit. ARGV: window (ms), this question's name, each key's limit.
# Returns {0} when counted, else {the first full key's index (from 1), ms until it has room}.
TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local window, name = tonumber(ARGV[1]), ARGV[2]
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local held, limit = redis.call('ZCARD', key), tonumber(ARGV[2 + i])
  if held >= limit then
    local edge = redis.call('ZRANGE', key, held - limit, held - limit, 'WITHSCORES')
    return {i, tostring(tonumber(edge[2]) + window - now)}
  end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, name)
  redis.call('PEXPIRE', key, math.ceil(window))
end
return {0, '0'}
"""


class SharedCounter:
    """Sliding windows in Redis, shared by every process on it; in-process while it is lost."""

    def __init__(self, shared: Shared, window: float = WINDOW_SECONDS) -> None:
        self._shared = shared
        self._window = window
        self._script = shared.script(TAKE)
        self._local = InProcessCounter(window=window)

    async def take(self, limits: Sequence[Limit]) -> Refusal | None:
        if not limits:
            return None
        if self._shared.usable():
            keys = [f"{KEY_PREFIX}questions:{limit.key}" for limit in limits]
            args: list[str | int | float] = [self._window * 1000, uuid.uuid4().hex]
            args += [limit.per_window for limit in limits]
            try:
                full, wait_ms = await self._script(keys=keys, args=args)
            except ERRORS as error:
                self._shared.lost(error)
            else:
                self._shared.back()
                if int(full) == 0:
                    return None
                return Refusal(limits[int(full) - 1], max(0.0, float(wait_ms)) / 1000)
        return await self._local.take(limits)
