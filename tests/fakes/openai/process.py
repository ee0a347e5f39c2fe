"""The fake OpenAI as a process of its own, for other processes to talk to (the benchmarks):

    python -m tests.fakes.openai --port P [--key K ...] [--reply TEXT] [--interval S]

It prints `FAKE_OPENAI_URL=...` once serving and runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
from collections.abc import Sequence

from tests.fakes.openai.script import DEFAULT_REPLY, Reply
from tests.fakes.openai.server import FakeOpenAI
from tests.fakes.openai.wire import DEFAULT_DIMS

DESCRIPTION = (
    "A loopback OpenAI-compatible server that the real `openai` client talks to"
    " (tests, benchmarks)."
)


async def serve(host: str, port: int, fake: FakeOpenAI) -> None:
    """Run `fake` until SIGINT/SIGTERM, printing its base URL first (for other processes)."""
    await fake.start(host, port)
    print(f"FAKE_OPENAI_URL={fake.base_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await fake.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.openai", description=DESCRIPTION)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key", action="append", help="accepted key (repeat); default: any")
    parser.add_argument("--dims", type=int, default=DEFAULT_DIMS)
    parser.add_argument(
        "--reply", default="".join(DEFAULT_REPLY), help="the text every answer streams"
    )
    parser.add_argument("--interval", type=float, default=0.0, help="seconds between chunks")
    parser.add_argument("--check-spec", action="store_true", help="check traffic against the spec")
    args = parser.parse_args(argv)
    words = re.findall(r"\S+\s*", args.reply) or [args.reply]
    fake = FakeOpenAI(
        keys=args.key,
        dims=args.dims,
        default=Reply(chunks=tuple(words), interval=args.interval),
        check_spec=args.check_spec,
    )
    asyncio.run(serve(args.host, args.port, fake))
