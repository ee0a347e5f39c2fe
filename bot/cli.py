"""The `bot` command: run, ingest, ask, migrate."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    raise NotImplementedError("the bot command is being built")
