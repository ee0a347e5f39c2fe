"""The benchmark's model: the loopback OpenAI fake in a process of its own, streaming each
conversation's scripted answer at a steady token rate and noting when its chunks went out.

    python -m bench.e2e.model --port 0 [--tokens 200] [--interval 0.02] [--first-token 0.5]

Prints `BENCH_MODEL_URL=http://127.0.0.1:P/v1` once serving. `GET /bench/timings` answers
`{qid: {"requested": t, "first_token": t, "last_token": t, "tokens": n}}` (monotonic seconds) for
every chat stream whose question carried a `BENCH-Q<n>` tag; `POST /bench/reset` forgets them.
Requests without a tag (the bot's condensing, say) get a short generic reply.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from aiohttp import web

from bench.e2e.common import (
    DEFAULT_FIRST_TOKEN,
    DEFAULT_INTERVAL,
    DEFAULT_TOKENS,
    answer_chunks,
    question_id,
)
from bench.e2e.procs import until_signalled
from tests.fakes.openai import FakeOpenAI, Reply

GENERIC = ("How", " do", " I", " deploy", " the", " bot?")


class BenchModel:
    def __init__(self, tokens: int, interval: float, first_token: float) -> None:
        self.tokens, self.interval, self.first_token = tokens, interval, first_token
        self.timings: dict[int, dict[str, Any]] = {}
        # Accepts any key and model: the bot under test may use its defaults.
        self.fake = FakeOpenAI(keys=None, default=self._script, check_spec=False)

    def _script(self, body: dict[str, Any]) -> Reply:
        messages = body.get("messages") or []
        users = [m for m in messages if m.get("role") == "user"]
        content = users[-1].get("content", "") if users else ""
        qid = question_id(content if isinstance(content, str) else str(content))
        if qid is None:
            return Reply(chunks=GENERIC)
        chunks = answer_chunks(qid, self.tokens)
        record: dict[str, Any] = {"requested": time.monotonic(), "tokens": len(chunks)}
        self.timings[qid] = record

        def sent(index: int) -> None:
            now = time.monotonic()
            if index == 0:
                record["first_token"] = now
            record["last_token"] = now

        # The model's latency before its first token, then one chunk per interval.
        return Reply(
            chunks=tuple(chunks),
            stall_after=0,
            stall=self.first_token,
            interval=self.interval,
            on_chunk=sent,
        )

    def app(self) -> web.Application:
        app = self.fake.app()
        app.router.add_get("/bench/timings", self._timings)
        app.router.add_post("/bench/reset", self._reset)
        return app

    async def _timings(self, request: web.Request) -> web.Response:
        return web.json_response({str(k): v for k, v in self.timings.items()})

    async def _reset(self, request: web.Request) -> web.Response:
        self.timings.clear()
        self.fake.requests.clear()
        return web.json_response({"ok": True})


async def serve(host: str, port: int, model: BenchModel) -> None:
    runner = web.AppRunner(model.app(), handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound_host, bound_port = runner.addresses[0][:2]
    print(f"BENCH_MODEL_URL=http://{bound_host}:{bound_port}/v1", flush=True)
    try:
        await until_signalled()
    finally:
        await model.fake.close()
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=DEFAULT_TOKENS)
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL)
    parser.add_argument("--first-token", type=float, default=DEFAULT_FIRST_TOKEN)
    args = parser.parse_args()
    model = BenchModel(args.tokens, args.interval, args.first_token)
    asyncio.run(serve(args.host, args.port, model))


if __name__ == "__main__":
    main()
