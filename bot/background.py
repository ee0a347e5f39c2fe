"""Work an adapter runs apart from the request that started it (an answer outlives the Slack ack or
the web socket's read loop), tracked so a shutdown can give it a grace period, then cancel it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class Background:
    """The tasks in flight for one adapter; `label` names it in the log."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("%s task %s failed", self._label, task.get_name(), exc_info=error)

    async def drain(self, grace: float) -> None:
        """Wait up to `grace` seconds for the tasks, then cancel the rest (the core ends a
        cancelled answer's message visibly and stores it as cancelled)."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def idle(self) -> None:
        """Wait until nothing is in flight (tests; a graceful stop)."""
        while self._tasks:
            await asyncio.gather(*set(self._tasks), return_exceptions=True)
