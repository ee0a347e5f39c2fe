"""Parsing documents where a parse can be stopped: each runs in a worker process, killed once it
passes MAX_PARSE_SECONDS, so a pathological PDF cannot stall a refresh (a thread cannot be
stopped). Workers live for one refresh, and start only once a file needs parsing.

Used by `bot.knowledge.refresh`; the parse itself is `chunking.chunk_file`, or what a caller
hands `Knowledge` in its place.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from pebble import ProcessPool

from bot.knowledge.chunking import Chunk, chunk_file

# (file, its path relative to KNOWLEDGE_DIR, its sha256) -> its chunks. Runs in another process,
# so it must be a module-level function.
Parse = Callable[[Path, str, str], list[Chunk]]

# Fresh interpreters, not forks: a fork copies the bot's threads' locks mid-use (asyncio's
# to_thread pool, onnxruntime), and a child can hang on one.
_START_METHOD = "spawn"


class ParseTimeout(Exception):
    """A parse ran past the limit; its worker was killed."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"parsing took over {seconds:g} s, the MAX_PARSE_SECONDS limit")
        self.seconds = seconds


class Parsers:
    """Worker processes for one refresh: `await parse(...)`, then `close()` (kills any left)."""

    def __init__(self, *, seconds: float, workers: int, parse: Parse = chunk_file) -> None:
        self._seconds = seconds
        self._workers = workers
        self._parse = parse
        self._pool: ProcessPool | None = None

    async def parse(self, source: Path, relative: str, digest: str) -> list[Chunk]:
        """The file's chunks; raises what the parse raised, or ParseTimeout."""
        if self._pool is None:
            context = multiprocessing.get_context(_START_METHOD)
            self._pool = ProcessPool(max_workers=self._workers, context=context)
        # The limit counts from when a worker takes the file, not while it waits for one.
        future = self._pool.schedule(
            self._parse, args=(source, relative, digest), timeout=self._seconds
        )
        try:
            # A cancelled refresh cancels the future, and pebble kills a worker running it.
            return await asyncio.wrap_future(future)
        except FutureTimeout:
            raise ParseTimeout(self._seconds) from None

    async def close(self) -> None:
        """Stop every worker; a parse still running is killed."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()  # type: ignore[no-untyped-call]  # pebble leaves it unannotated
            await asyncio.to_thread(pool.join)
