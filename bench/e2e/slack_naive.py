"""The naive Slack baseline the benchmark compares answerbot with: the common tutorial bot that
posts a placeholder, then edits it every N tokens while the model streams, then once more with
the whole answer. No retrieval, no shared budget; slack_sdk's rate-limit retry handler is all it
has against 429s.

    SLACK_BOT_TOKEN=... SLACK_SIGNING_SECRET=... PORT=3000 python -m bench.e2e.slack_naive

Also reads SLACK_API_URL, OPENAI_BASE_URL, OPENAI_API_KEY, CHAT_MODEL and NAIVE_EVERY (20).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from typing import Any

from aiohttp import web
from openai import AsyncOpenAI
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger("slack_naive")

PLACEHOLDER = "Thinking…"
DEFAULT_EVERY = 20
DEFAULT_MODEL = "gpt-5.4-mini"


class RateLimitRetryHandler(AsyncRateLimitErrorRetryHandler):
    """slack_sdk's stock handler (sleep Retry-After plus up to a second of jitter, retry once),
    in the benchmark's time: the fake Slack's windows are BENCH_SPEEDUP times shorter, so its
    Retry-After comes in fractions of a second, which the stock handler's int() cannot read."""

    def __init__(self, speedup: float) -> None:
        super().__init__()
        self.speedup = speedup

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        if response is None:
            raise error or RuntimeError("no response to retry")
        state.next_attempt_requested = True
        values = {k.lower(): v for k, v in response.headers.items()}.get("retry-after", ["1"])
        await asyncio.sleep(float(values[0]) + random.random() / self.speedup)
        state.increment_current_attempt()


def build_app() -> AsyncApp:
    app = AsyncApp(
        token=os.environ["SLACK_BOT_TOKEN"], signing_secret=os.environ["SLACK_SIGNING_SECRET"]
    )
    app.client.base_url = os.environ.get("SLACK_API_URL", app.client.base_url)
    speedup = float(os.environ.get("BENCH_SPEEDUP", "1"))
    app.client.retry_handlers.append(RateLimitRetryHandler(speedup))
    openai = AsyncOpenAI()
    model = os.environ.get("CHAT_MODEL", DEFAULT_MODEL)
    every = int(os.environ.get("NAIVE_EVERY", DEFAULT_EVERY))

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], client: AsyncWebClient) -> None:
        channel, thread_ts = event["channel"], event.get("thread_ts") or event["ts"]
        try:
            posted = await client.chat_postMessage(
                channel=channel, thread_ts=thread_ts, text=PLACEHOLDER
            )
        except SlackApiError as error:
            log.error("placeholder failed, answer lost: %s", error.response.get("error"))
            return
        ts = posted["ts"]
        text, tokens = "", 0
        stream = await openai.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": event.get("text", "")}],
            stream=True,
        )
        async for chunk in stream:
            delta = chunk.choices[0].delta.content if chunk.choices else None
            if not delta:
                continue
            text += delta
            tokens += 1
            if tokens % every == 0:
                try:
                    await client.chat_update(channel=channel, ts=ts, text=text)
                except SlackApiError as error:
                    log.warning("interim edit skipped: %s", error.response.get("error"))
        try:
            await client.chat_update(channel=channel, ts=ts, text=text)
        except SlackApiError as error:
            log.error("final edit failed, answer lost: %s", error.response.get("error"))

    return app


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"))
    port = int(os.environ.get("PORT", "3000"))
    server = build_app().server(port=port, path="/slack/events", host="127.0.0.1")
    server.web_app.router.add_get("/healthz", healthz)
    server.start()


if __name__ == "__main__":
    main()
