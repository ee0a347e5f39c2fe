"""The `bot` command (also `python -m bot`): run, ingest, ask, migrate, rotate-key.

Settings are read once here and passed down. `bot run` is the composition root: the one place
where the core meets the adapters, imported only when it runs so the core stays free of them.
Every command runs with a umask that keeps what it creates private (`bot.private_files`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError
from tqdm import tqdm

from bot.answer import Answerer, Turn
from bot.citations import Source
from bot.core import database_address, open_store
from bot.errors import BotError
from bot.knowledge import Knowledge
from bot.logs import configure_logging
from bot.private_files import private_dir, restrict_umask
from bot.resources import bundled
from bot.rotation import NEW_SECRET_ENV, rotate_key
from bot.settings import Settings

log = logging.getLogger("bot")
CLI_WORKSPACE = "cli:local"  # `bot ask` uses no platform workspace; only the fallback key applies


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bot", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("run", help="start every adapter whose credentials are set (else web chat)")
    ingest = commands.add_parser("ingest", help="index the knowledge folder (only what changed)")
    ingest.add_argument("directory", nargs="?", type=Path, help="default: KNOWLEDGE_DIR")
    ask = commands.add_parser("ask", help="answer one question in the terminal, with sources")
    ask.add_argument("question")
    earlier = ask.add_mutually_exclusive_group()
    earlier.add_argument(
        "--thread",
        metavar="NAME",
        help="continue (or start) the conversation NAME kept in the database",
    )
    earlier.add_argument(
        "--history-file",
        metavar="FILE",
        type=Path,
        help='earlier turns as JSON: [{"role": "user" or "assistant", "content": "..."}, ...]',
    )
    commands.add_parser("migrate", help="apply database migrations")
    commands.add_parser(
        "rotate-key",
        help="re-seal the stored keys under a new master secret (stop the bot first)",
        description=(
            "Without SECRET_KEY: a new secret replaces DATA_DIR/secret.key. With SECRET_KEY, or "
            f"to move to one: put the new secret in the environment as {NEW_SECRET_ENV}, then "
            "set SECRET_KEY to it. Stop the bot first; run again if it was interrupted."
        ),
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as error:
        print(f"bot: invalid settings:\n{error}", file=sys.stderr)
        return 2
    if args.command == "ingest" and args.directory is not None:
        settings = settings.model_copy(update={"knowledge_dir": args.directory})
    settings = with_sample_knowledge(settings)
    configure_logging(settings)
    restrict_umask()
    try:
        private_dir(settings.data_dir)
        if args.command == "run":
            from adapters.launch import serve  # the composition root; see the module docstring

            asyncio.run(serve(settings))
        elif args.command == "ingest":
            asyncio.run(_ingest(settings))
        elif args.command == "ask":
            history = _read_history(args.history_file) if args.history_file else []
            return asyncio.run(_ask(settings, args.question, history, args.thread))
        elif args.command == "migrate":
            asyncio.run(_migrate(settings))
        elif args.command == "rotate-key":
            rotation = asyncio.run(rotate_key(settings, os.environ.get(NEW_SECRET_ENV)))
            print(f"re-sealed {rotation.resealed} stored secrets; {rotation.next_step}")
    except KeyboardInterrupt:
        return 130
    except BotError as error:
        print(f"bot: {error.detail}", file=sys.stderr)
        return 1
    return 0


def _read_history(path: Path) -> list[Turn]:
    """Turns from a JSON file, or a BotError saying what is wrong with it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BotError(f"cannot read the history file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise BotError(f"the history file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise BotError(f"the history file {path} must hold a JSON list of turns")
    turns: list[Turn] = []
    for number, item in enumerate(data, start=1):
        role = item.get("role") if isinstance(item, dict) else None
        content = item.get("content") if isinstance(item, dict) else None
        if role not in ("user", "assistant") or not isinstance(content, str):
            raise BotError(
                f"turn {number} of {path} must be "
                '{"role": "user" or "assistant", "content": "text"}'
            )
        turns.append(Turn(role=role, text=content))
    return turns


def with_sample_knowledge(settings: Settings) -> Settings:
    """Settings whose KNOWLEDGE_DIR falls back to the bundled user guide.

    Only when KNOWLEDGE_DIR was not set and ./knowledge does not exist where the bot was started,
    so a fresh install started anywhere can still answer questions about itself.
    """
    if "knowledge_dir" in settings.model_fields_set or settings.knowledge_dir.exists():
        return settings
    return settings.model_copy(update={"knowledge_dir": bundled("knowledge")})


async def _migrate(settings: Settings) -> None:
    store = await open_store(settings)
    try:
        applied = await store.applied_migrations()
    finally:
        await store.close()
    print(f"database {database_address(settings)}: {len(applied)} migrations applied")
    for name in applied:
        print(f"  {name}")


async def _ingest(settings: Settings) -> None:
    if not settings.knowledge_dir.is_dir():
        raise BotError(f"knowledge folder {settings.knowledge_dir} does not exist")
    knowledge = Knowledge(settings)
    bar = tqdm(total=0, unit="file", desc="indexing", disable=None)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        report = await knowledge.refresh(progress=progress)
    finally:
        bar.close()
        await knowledge.close()
    print(report)


async def _ask(settings: Settings, question: str, history: list[Turn], thread: str | None) -> int:
    store = await open_store(settings)
    knowledge = Knowledge(settings)
    sources: list[Source] = []
    thread_key = f"cli:{thread}" if thread else None
    try:
        await knowledge.refresh_at_start()
        if thread_key is not None:
            stored = await store.thread_messages(thread_key, limit=settings.history_turns)
            history = [Turn(role=m.role, text=m.text) for m in stored if m.text]
        answerer = Answerer(settings, knowledge, store)
        answer = answerer.answer(question, history, CLI_WORKSPACE)
        async for delta in answer:
            sys.stdout.write(delta)
            sys.stdout.flush()
        sources = answer.sources
        if thread_key is not None:
            await store.record_exchange(
                thread_key=thread_key,
                workspace=CLI_WORKSPACE,
                question=question,
                answer=answer.text,
                sources=sources,
                status="done",
            )
    except BotError as error:
        print(f"\n\nbot: {error.user_message}", file=sys.stderr)
        return 1
    finally:
        await knowledge.close()
        await store.close()
    print()
    if sources:
        print("\nSources")
        for source in sources:
            print(f"  [{source.number}] {source.label}")
    return 0
