"""Parses for tests, run in the refresh's worker processes (so they live in a module those can
import): one that goes wrong as pathological documents do, one that counts the parses."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bot.knowledge.chunking import Chunk, chunk_file

# The file `counting_parse` appends each parsed path to: named in the environment, which the
# workers inherit, as they share no memory with the test.
PARSE_LOG_ENV = "TEST_PARSE_LOG"


def parse_or_hang(path: Path, relative: str, digest: str) -> list[Chunk]:
    """chunk_file, except that a file named hang* never finishes and crash* kills its process
    (as the kernel's OOM killer would)."""
    if path.name.startswith("hang"):
        while True:
            time.sleep(1)
    if path.name.startswith("crash"):
        os._exit(137)
    return chunk_file(path, relative, digest)


def counting_parse(path: Path, relative: str, digest: str) -> list[Chunk]:
    """chunk_file, logging `relative` to the file PARSE_LOG_ENV names."""
    with open(os.environ[PARSE_LOG_ENV], "a", encoding="utf-8") as log:
        log.write(relative + "\n")
    return chunk_file(path, relative, digest)


class ParseLog:
    """How often each file was parsed, by relative path; compares equal to that dict."""

    __hash__ = None  # type: ignore[assignment]  # equal to a dict, so unhashable like one

    def __init__(self, path: Path) -> None:
        self.path = path

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        if self.path.exists():
            for relative in self.path.read_text(encoding="utf-8").splitlines():
                counts[relative] = counts.get(relative, 0) + 1
        return counts

    def __eq__(self, other: object) -> bool:
        return self.counts() == other

    def __repr__(self) -> str:
        return repr(self.counts())
