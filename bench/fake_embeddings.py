"""The loopback fake OpenAI endpoint as the retrieval benchmark runs it: in its own process, with a
GET /bench/stats route counting the embedding requests and texts it has served.

    .venv/bin/python bench/fake_embeddings.py [--port 0] [--dims 384]   (prints FAKE_OPENAI_URL=...)

The counting lives here, not in tests/fakes/openai/, so the tests' fake keeps its behaviour. No
request is kept (`keep_requests=False`): 100k chunks' bodies would only cost memory.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fakes.openai import FAKE_KEY, FakeOpenAI, Recorded, serve

STATS_PATH = "/bench/stats"
BENCH_DIMS = 384


class CountingFake(FakeOpenAI):
    """FakeOpenAI plus counters of embedding requests and embedded texts."""

    def __init__(self, **options: Any) -> None:
        super().__init__(keep_requests=False, **options)
        self.embedding_calls = 0
        self.embedded_texts = 0

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_get(STATS_PATH, self._stats)
        return app

    def on_request(self, recorded: Recorded) -> None:
        if not recorded.path.endswith("/embeddings"):
            return
        self.embedding_calls += 1
        inputs = recorded.body.get("input") if isinstance(recorded.body, dict) else None
        self.embedded_texts += len(inputs) if isinstance(inputs, list) else 1

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"embedding_requests": self.embedding_calls, "embedded_texts": self.embedded_texts}
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dims", type=int, default=BENCH_DIMS)
    args = parser.parse_args()
    # No spec checks: they cost more than the embeddings, and the tests check the traffic.
    fake = CountingFake(keys=(FAKE_KEY,), dims=args.dims, check_spec=False)
    asyncio.run(serve(args.host, args.port, fake))


if __name__ == "__main__":
    main()
