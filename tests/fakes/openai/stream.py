"""A chat completion streamed as OpenAI streams it: server-sent `chat.completion.chunk` events (a
role delta, one per content chunk, the finish reason, usage when asked for) ending in
`data: [DONE]`, paced, stalled or cut as the `Reply` says."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tests.fakes.openai.script import Reply
from tests.fakes.openai.wire import abort, usage


async def stream(
    request: web.Request,
    body: dict[str, Any],
    reply: Reply,
    *,
    next_id: Callable[[], str],
    check: Callable[[dict[str, Any]], None] | None,
    pause: Callable[[float], Awaitable[None]],
) -> web.StreamResponse:
    """Write `reply` to `request` as SSE; `check` sees every chunk, `pause` does the stalls."""
    response = web.StreamResponse(headers={"Cache-Control": "no-cache"})
    response.content_type = "text/event-stream"
    await response.prepare(request)
    base = {
        "id": next_id(),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": str(body.get("model", "")),
    }
    with_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    async def send(choices: list[dict[str, Any]], **extra: Any) -> None:
        chunk = {**base, "choices": choices, **extra}
        if with_usage and "usage" not in extra:
            chunk["usage"] = None
        if check is not None:
            check(chunk)
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

    def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]

    # Runs until the reply is sent, the client goes away, or the script cuts the connection.
    with contextlib.suppress(ConnectionResetError):
        await send(choice({"role": "assistant", "content": "", "refusal": None}))
        for index, text in enumerate([*reply.chunks, None]):
            if reply.fail_after == index:
                abort(request)
                return response
            if reply.stall_after == index:
                await pause(reply.stall)
            elif reply.interval:
                await asyncio.sleep(reply.interval)
            if text is not None:
                await send(choice({"content": text}))
                if reply.on_chunk is not None:
                    reply.on_chunk(index)
        await send(choice({}, reply.finish_reason))
        if with_usage:
            await send([], usage=usage(body, "".join(reply.chunks)))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
    return response
