"""Rate budgets shared by replicas through Redis (REDIS_URL): a platform's limit belongs to the
workspace or channel, so N processes together must stay within it, and a 429 one of them gets
must pause them all.

What is shared, per budget key, in Redis and changed only by one Lua script (`ACQUIRE`, atomic,
timed by the Redis server's clock, never a host's): the window of recent calls (a sorted set
scored by when each call counts), the interim edits' token bucket, the Retry-After pause, and
the finals each process owes. What stays in each process: its waiters and their ranks, its
calls in flight, and a mirror of its own calls (the in-process `Budget` it extends), so the
queue is ordered locally and each grant costs one round trip.

Fairness between processes for priorities: the same rules as in one process, applied to the
shared window. Interim edits only take a call while the window holds fewer than
`rate - max(reserve, finals owed by every process)`, and need a token of the shared bucket;
first and final texts may use the whole window. So one process's interim edits never crowd out
another's finals, with no fixed split per process (which would waste the budget of idle ones).

Redis lost while running: the process keeps to its own budget (its mirror already knows its own
recent calls), warns once, and asks Redis again after a few seconds (`bot.shared`). Waiting for
Redis instead would leave every answer frozen mid-sentence for the whole outage; on our own,
each process stays within the rate and still honours the 429s the platform sends it.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Callable

from redis.commands.core import AsyncScript

from bot.shared import ERRORS, KEY_PREFIX, Shared
from bot.streaming.budget import (
    MAX_DEBT_WINDOWS,
    Budget,
    Budgets,
    Priority,
    _Call,
)
from bot.streaming.clock import Clock
from bot.surface import BudgetSpec

# A process's owed finals count for the others this long after it last said so (milliseconds):
# an answer owing one writes at least this often, and a crashed process's count fades.
OWED_TTL_MS = 120_000
# Shortest wait after a refusal (milliseconds): Redis rounds times to microseconds.
MIN_WAIT_MS = 1.0

# KEYS: state hash (tokens, refilled, paused), calls sorted set, owed hash.
# ARGV: rate, window, burst, interval, reserve, debt, process, owed, bound, pause, owed ttl,
# name, then the finished calls (count, then name, elapsed, unused per call), then the classes
# asked for (count, then each, most urgent first). Times in ms of Redis's clock.
# Returns {class granted or -1, ms until one may be (-1: not before a call returns)}.
ACQUIRE = """
local rate, window, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local interval, reserve, debt = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local process, owed_here, bound = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])
local pause, owed_ttl, name = tonumber(ARGV[10]), tonumber(ARGV[11]), ARGV[12]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'refilled', 'paused')
local tokens = tonumber(state[1]) or burst
local refilled = tonumber(state[2]) or now
local paused = tonumber(state[3]) or 0
tokens = math.min(burst, tokens + math.max(0, now - refilled) / interval)
if pause > 0 then paused = math.max(paused, now + pause) end
local i = 14
for _ = 1, tonumber(ARGV[13]) do
  local member, elapsed, unused = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  i = i + 3
  if unused == '1' then
    if redis.call('ZREM', KEYS[2], member) == 1 then tokens = math.min(burst, tokens + 1) end
  else
    local score = tonumber(redis.call('ZSCORE', KEYS[2], member))
    if score then
      redis.call('ZADD', KEYS[2], 'XX', score - bound + math.min(elapsed, bound), member)
    end
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
if owed_here > 0 then
  redis.call('HSET', KEYS[3], process, owed_here .. ':' .. now)
else
  redis.call('HDEL', KEYS[3], process)
end
local owed = 0
local entries = redis.call('HGETALL', KEYS[3])
for j = 1, #entries, 2 do
  local count, stamp = string.match(entries[j + 1], '^(%d+):(.+)$')
  if count and tonumber(stamp) > now - owed_ttl then
    owed = owed + tonumber(count)
  else
    redis.call('HDEL', KEYS[3], entries[j])
  end
end
local in_window = redis.call('ZCARD', KEYS[2])
local granted, soonest = -1, math.huge
local classes = tonumber(ARGV[i])
for k = 1, classes do
  local class = tonumber(ARGV[i + k])
  local ready = math.max(now, paused)
  local cap = rate
  if class == 2 then cap = math.max(1, rate - math.max(reserve, owed)) end
  if class ~= 1 and tokens < 1 - 1e-9 then
    ready = math.max(ready, now + (1 - tokens) * interval)
  end
  if in_window >= cap then
    local edge = redis.call('ZRANGE', KEYS[2], in_window - cap, in_window - cap, 'WITHSCORES')
    ready = math.max(ready, tonumber(edge[2]) + window)
  end
  if ready <= now then
    granted = class
    break
  end
  soonest = math.min(soonest, ready)
end
if granted >= 0 then
  tokens = math.max(-rate * debt, tokens - 1)
  redis.call('ZADD', KEYS[2], now + bound, name)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'refilled', tostring(now),
  'paused', tostring(paused))
local ttl = math.ceil(math.max(2 * window + bound, paused - now)) + 1000
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], owed_ttl)
if granted >= 0 then return {granted, '0'} end
if soonest == math.huge then return {-1, '-1'} end
return {-1, tostring(soonest - now)}
"""


class SharedBudget(Budget):
    """A `Budget` whose window, bucket and pause are shared through Redis; the queue is local."""

    def __init__(
        self,
        spec: BudgetSpec,
        clock: Clock,
        on_use: Callable[[Budget], None] | None,
        shared: Shared,
        script: AsyncScript,
        process: str,
    ) -> None:
        super().__init__(spec, clock, on_use)
        self._shared = shared
        self._script = script
        self._process = process
        # A hash tag: the three keys stay in one slot should the Redis be a cluster.
        base = f"{KEY_PREFIX}budget:{{{spec.key}}}"
        self._keys = [f"{base}:state", f"{base}:calls", f"{base}:owed"]
        self._names = itertools.count()
        # Told to Redis with the next script run (by the dispatcher): calls that came back (their
        # name, ms they took, unused) and a Retry-After (ms; 0 for none).
        self._finished: list[tuple[str, float, bool]] = []
        self._pause_ms = 0.0

    def pause(self, seconds: float) -> None:
        super().pause(seconds)
        self._pause_ms = max(self._pause_ms, max(0.0, seconds) * 1000)
        self._wake()  # told now, not with this process's next call: the others must stop at once

    def _done(self, call: _Call) -> None:
        super()._done(call)
        if call.shared is not None:
            # Redis stamped the grant while the script ran, somewhere between this process
            # asking and hearing back. Measured from the asking, the call never counts in the
            # shared window before its response came back; measured from the hearing back, a
            # slow reply (a busy event loop) would count it before the platform did, and the
            # next replica's call could reach the platform inside the same window (the scale
            # bench met chat.update 429s so).
            since = call.granted if call.asked is None else call.asked
            elapsed = max(0.0, call.at - since) * 1000
            self._finished.append((call.shared, elapsed, call.unused))
            # Told now, not with this process's next call: until Redis hears, the call holds
            # its slot for every replica as if still in flight (up to its arrival bound).
            self._wake()

    async def _dispatch(self) -> None:
        try:
            while self._waiters or self._pause_ms or self._finished:
                now = self._clock.monotonic()
                allowed, soonest = self._candidates(now)
                if not self._shared.usable():
                    self._finished.clear()  # kept in the process's mirror meanwhile
                    self._pause_ms = 0.0
                    if allowed:
                        self._grant(min(allowed.values(), key=lambda r: r[0])[1], now)
                    elif self._waiters:
                        await self._wait(soonest - now)
                    continue
                if not allowed and not self._pause_ms and not self._finished:
                    await self._wait(soonest - now)
                    continue
                name = f"{self._process}:{next(self._names)}"
                asked = self._clock.monotonic()
                # A newcomer or a returned call during the round trip sets this again; waiting
                # would clear it and sleep through them (an answer's next edit, asked for while
                # its last one was being told to Redis, waited for ever).
                self._changed.clear()
                try:
                    granted, wait_ms = await self._ask(sorted(allowed), name)
                except ERRORS as error:
                    self._shared.lost(error)
                    continue
                self._shared.back()
                if granted is None:
                    if self._waiters and not self._changed.is_set():
                        wait = math.inf if wait_ms < 0 else max(wait_ms, MIN_WAIT_MS) / 1000
                        await self._wait(min(wait, soonest - now))
                    continue
                # Waiters may have come or gone during the round trip: the best of the class
                # granted takes it, or it goes back.
                now = self._clock.monotonic()
                allowed, _ = self._candidates(now)
                choice = allowed.get(granted)
                if choice is None:
                    self._finished.append((name, 0.0, True))
                    continue
                self._grant(choice[1], now, shared=name)
                if choice[1].call is not None:
                    choice[1].call.asked = asked
        finally:
            self._dispatcher = None

    async def _ask(self, classes: list[Priority], name: str) -> tuple[Priority | None, float]:
        finished, self._finished = self._finished, []
        pause, self._pause_ms = self._pause_ms, 0.0
        spec = self.spec
        args: list[str | int | float] = [
            spec.rate,
            spec.window * 1000,
            self.burst,
            spec.window * 1000 / spec.rate,
            self._min_reserve,
            MAX_DEBT_WINDOWS,
            self._process,
            self._owed,
            spec.arrival_bound * 1000,
            pause,
            OWED_TTL_MS,
            name,
            len(finished),
        ]
        for member, elapsed, unused in finished:
            args += [member, elapsed, int(unused)]
        args += [len(classes), *(int(c) for c in classes)]
        granted, wait = await self._script(keys=self._keys, args=args)
        return (None if int(granted) < 0 else Priority(int(granted))), float(wait)


class SharedBudgets(Budgets):
    """The registry, making budgets shared through `shared` (one process's name in Redis)."""

    def __init__(self, clock: Clock, shared: Shared) -> None:
        super().__init__(clock)
        self._shared = shared
        self._script = shared.script(ACQUIRE)
        self._process = uuid.uuid4().hex[:12]

    def _make(self, spec: BudgetSpec) -> Budget:
        return SharedBudget(
            spec, self._clock, self._hold, self._shared, self._script, self._process
        )
