"""Parsing documents where a parse can be stopped: each runs in a worker process, killed once it
passes MAX_PARSE_SECONDS, so a pathological PDF cannot stall a refresh (a thread cannot be
stopped). Workers live for one refresh, and start only once a file needs parsing.

Plain text and Markdown of up to 1 MB are parsed in the bot's own process instead: their parse is
line by line in our code (no native parser, nothing that can loop), so it is bounded by the size,
and a worker costs ~2.5 s to start and ~220 MB. PDFs, HTML and reStructuredText, whose parsers
have pathological inputs, always go to a worker.

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

from bot.knowledge.chunking import (
    MARKDOWN_SUFFIXES,
    TEXT_SUFFIXES,
    Chunk,
    chunk_file,
    warm_up,
)

# (file, its path relative to KNOWLEDGE_DIR, its sha256) -> its chunks. Runs in another process,
# so it must be a module-level function.
Parse = Callable[[Path, str, str], list[Chunk]]

# Fresh interpreters, not forks: a fork copies the bot's threads' locks mid-use (asyncio's
# to_thread pool, onnxruntime), and a child can hang on one.
_START_METHOD = "spawn"
INLINE_SUFFIXES = MARKDOWN_SUFFIXES | TEXT_SUFFIXES
INLINE_MAX_BYTES = 1024 * 1024


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
        if self._inline(source):
            return await asyncio.to_thread(chunk_file, source, relative, digest)
        if self._pool is None:
            context = multiprocessing.get_context(_START_METHOD)
            self._pool = ProcessPool(
                max_workers=self._workers, context=context, initializer=_preload
            )
        # The limit counts from when a worker takes the file, not while it waits for one.
        future = self._pool.schedule(
            self._parse, args=(source, relative, digest), timeout=self._seconds
        )
        try:
            # A cancelled refresh cancels the future, and pebble kills a worker running it.
            return await asyncio.wrap_future(future)
        except FutureTimeout:
            raise ParseTimeout(self._seconds) from None

    def _inline(self, source: Path) -> bool:
        if self._parse is not chunk_file or source.suffix.lower() not in INLINE_SUFFIXES:
            return False  # a parse handed in (tests, tools) is never assumed bounded
        try:
            return source.stat().st_size <= INLINE_MAX_BYTES
        except OSError:
            return False  # let the worker's parse raise what is wrong with the file

    async def close(self) -> None:
        """Stop every worker; a parse still running is killed."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()  # type: ignore[no-untyped-call]  # pebble leaves it unannotated
            await asyncio.to_thread(pool.join)


def _preload() -> None:
    """Run in each worker before its first file: importing the parsers (llama-index) and making
    the splitter take a fresh interpreter seconds, which must not count against a file's
    MAX_PARSE_SECONDS (importing this module, to call this, did the imports)."""
    warm_up()
