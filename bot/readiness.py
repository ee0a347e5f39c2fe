"""Whether this process can serve: named checks that the core (database, knowledge index) and the
adapters (a platform connection) register, run together for GET /readyz.

A check is a coroutine returning None when ready, else a short reason. Reasons are shown on a
public endpoint, so a check says what is wrong in words of its own (never an exception's text,
which may name a host or quote a URL with its password); what went wrong in detail is logged,
through the log's redaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 2.0  # seconds a check may take before it counts as failed (a probe waits on it)

Probe = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str  # "ok", or why not: safe to show anyone


class Readiness:
    """The process's readiness checks by name; a later `add` under a name replaces the earlier."""

    def __init__(self, timeout: float = CHECK_TIMEOUT) -> None:
        self._timeout = timeout
        self._probes: dict[str, Probe] = {}

    def add(self, name: str, probe: Probe) -> None:
        self._probes[name] = probe

    def remove(self, name: str) -> None:
        self._probes.pop(name, None)

    async def check(self) -> list[Check]:
        """Every check, run at once, in the order they were added."""
        probes = list(self._probes.items())
        return list(await asyncio.gather(*(self._run(name, probe) for name, probe in probes)))

    async def _run(self, name: str, probe: Probe) -> Check:
        try:
            async with asyncio.timeout(self._timeout):
                reason = await probe()
        except TimeoutError:
            reason = f"no answer within {self._timeout:g} s"
        except Exception as error:
            log.warning("readiness check %s failed", name, exc_info=True)
            reason = f"failed ({type(error).__name__}; the log says more)"
        return Check(name, reason is None, reason or "ok")
