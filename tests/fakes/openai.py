"""A loopback OpenAI-compatible server that the real `openai` client talks to (tests, benchmarks).

It speaks the wire protocol (SSE chat streams ending in `data: [DONE]`, JSON completions,
embeddings, the model list, OpenAI's error JSON), records every request, and is scripted per
test: queue replies or failures, cut a stream after N chunks, stall it, pace it. With
`check_spec` (the default) every request it receives and every response it sends is checked
against OpenAI's published OpenAPI description; mismatches collect in `violations`.

Other processes run it with `python -m tests.fakes.openai --port P` (prints `FAKE_OPENAI_URL=...`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import math
import re
import signal
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

FAKE_KEY = "sk-fake-test-key-0001"
DEFAULT_MODELS = ("gpt-fake-mini", "text-embedding-fake")
DEFAULT_DIMS = 256
DEFAULT_REPLY = ("This", " is", " the", " fake", " model's", " answer", " [1].")
MODELS_CREATED = 1_700_000_000  # a fixed "created" stamp keeps /models output deterministic
VIOLATION_CHARS = 600  # enough of a validation error to see what broke
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any  # parsed JSON, or None

    @property
    def api_key(self) -> str | None:
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" and token else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat messages of a chat completion request."""
        return list(self.body.get("messages", [])) if isinstance(self.body, dict) else []


@dataclass
class Reply:
    """What one chat completion answers.

    `fail_after=n` closes the connection after n content chunks (mid-stream failure);
    `stall_after=n` waits `stall` seconds (or until `release()`) before content chunk n
    (n == len(chunks) stalls before the final chunk); `interval` paces every content chunk.
    `on_chunk(n)` is called as content chunk n has been written (benchmarks time the stream).
    """

    chunks: Sequence[str] = DEFAULT_REPLY
    fail_after: int | None = None
    stall_after: int | None = None
    stall: float = 0.0
    interval: float = 0.0
    finish_reason: str = "stop"
    on_chunk: Callable[[int], None] | None = None


@dataclass
class Failure:
    """An error response in OpenAI's shape."""

    status: int
    code: str | None = None
    message: str = "The fake was told to fail this request."
    type: str = "invalid_request_error"
    retry_after: int | None = None  # the spec allows whole seconds >= 1


Script = Reply | Failure | Callable[[dict[str, Any]], "Reply | Failure | Sequence[str]"]


@dataclass
class _Queues:
    chat: deque[Script] = field(default_factory=deque)
    embeddings: deque[Failure] = field(default_factory=deque)
    models: deque[Failure] = field(default_factory=deque)


class FakeOpenAI:
    """The fake endpoint; `await start()` then point `OPENAI_BASE_URL` at `base_url`.

    `keys=None` accepts any bearer token; `models=None` serves any model name.
    """

    def __init__(
        self,
        *,
        keys: Iterable[str] | None = (FAKE_KEY,),
        models: Iterable[str] | None = None,
        dims: int = DEFAULT_DIMS,
        default: Script | None = None,
        check_spec: bool = True,
    ) -> None:
        self.keys: set[str] | None = set(keys) if keys is not None else None
        self.models: set[str] | None = set(models) if models is not None else None
        self.dims = dims
        self.default: Script = default if default is not None else Reply()
        self.check_spec = check_spec
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self._queues = _Queues()
        self._release = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._host = "127.0.0.1"
        self._counter = 0

    # -- scripting ------------------------------------------------------------------------------

    def reply(self, *chunks: str, **options: Any) -> None:
        """The next chat completion answers with these chunks (options: see `Reply`)."""
        self._queues.chat.append(Reply(chunks=chunks, **options))

    def reply_with(self, script: Script) -> None:
        """The next chat completion follows `script`: a Reply, a Failure or f(request_body)."""
        self._queues.chat.append(script)

    def fail(
        self,
        status: int,
        *,
        code: str | None = None,
        message: str | None = None,
        retry_after: int | None = None,
        endpoint: str = "chat",
    ) -> None:
        """The next request to `endpoint` ("chat", "embeddings" or "models") fails."""
        failure = Failure(status, code=code, retry_after=retry_after, type=_error_type(status))
        if message:
            failure.message = message
        getattr(self._queues, endpoint).append(failure)

    def release(self) -> None:
        """End every stall in progress now."""
        self._release.set()
        self._release = asyncio.Event()

    @property
    def chat_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def embedding_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/embeddings")]

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self._port}/v1"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        # handler_cancellation: a client that gives up (an idle timeout) ends its handler.
        self._runner = web.AppRunner(self.app(), handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self._host, self._port = self._runner.addresses[0][:2]
        return self.base_url

    async def close(self) -> None:
        self._closing = True
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- handlers -------------------------------------------------------------------------------

    async def _receive(self, request: web.Request) -> tuple[Recorded, web.Response | None]:
        raw = await request.read()
        body = None
        if raw:
            with contextlib.suppress(ValueError):
                body = json.loads(raw)
        headers = {name.lower(): value for name, value in request.headers.items()}
        recorded = Recorded(request.method, request.path, headers, body)
        self.requests.append(recorded)
        if self.check_spec:
            self._check(
                f"request {request.method} {request.path}",
                lambda: _spec().check_request(request.method, request.path, raw or None, headers),
            )
        key = recorded.api_key
        if self.keys is not None and key not in self.keys:
            message = (
                f"Incorrect API key provided: {key}."
                if key
                else "You didn't provide an API key in an Authorization header."
            )
            return recorded, self._error(Failure(401, "invalid_api_key", message))
        if request.method == "POST" and not isinstance(body, dict):
            return recorded, self._error(Failure(400, None, "The body must be a JSON object."))
        return recorded, None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        recorded, refused = await self._receive(request)
        if refused is not None:
            return refused
        body: dict[str, Any] = recorded.body
        model = str(body.get("model", ""))
        if self.models is not None and model not in self.models:
            return self._error(_model_not_found(model))
        script = self._queues.chat.popleft() if self._queues.chat else self.default
        outcome = script(body) if callable(script) else script
        if not isinstance(outcome, Reply | Failure):
            outcome = Reply(chunks=tuple(outcome))
        if isinstance(outcome, Failure):
            return self._error(outcome, spec_path="/v1/chat/completions")
        if body.get("stream"):
            return await self._stream(request, body, outcome)
        if outcome.fail_after is not None:
            _abort(request)
            return web.Response()
        if outcome.stall_after is not None:
            await self._pause(outcome.stall)
        text = "".join(outcome.chunks)
        completion = {
            "id": self._next_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "finish_reason": outcome.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": _usage(body, text),
        }
        return self._json(completion, "/v1/chat/completions", "post")

    async def _stream(
        self, request: web.Request, body: dict[str, Any], reply: Reply
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Cache-Control": "no-cache"})
        response.content_type = "text/event-stream"
        await response.prepare(request)
        base = {
            "id": self._next_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": str(body.get("model", "")),
        }
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        async def send(choices: list[dict[str, Any]], **extra: Any) -> None:
            chunk = {**base, "choices": choices, **extra}
            if with_usage and "usage" not in extra:
                chunk["usage"] = None
            if self.check_spec:
                self._check(
                    "stream chunk",
                    lambda: _spec().check_schema("CreateChatCompletionStreamResponse", chunk),
                )
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
            return [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]

        # Runs until the reply is sent, the client goes away, or the script cuts the connection.
        with contextlib.suppress(ConnectionResetError):
            await send(choice({"role": "assistant", "content": "", "refusal": None}))
            for index, text in enumerate([*reply.chunks, None]):
                if reply.fail_after == index:
                    _abort(request)
                    return response
                if reply.stall_after == index:
                    await self._pause(reply.stall)
                elif reply.interval:
                    await asyncio.sleep(reply.interval)
                if text is not None:
                    await send(choice({"content": text}))
                    if reply.on_chunk is not None:
                        reply.on_chunk(index)
            await send(choice({}, reply.finish_reason))
            if with_usage:
                await send([], usage=_usage(body, "".join(reply.chunks)))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        return response

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        recorded, refused = await self._receive(request)
        if refused is not None:
            return refused
        if self._queues.embeddings:
            return self._error(self._queues.embeddings.popleft(), spec_path="/v1/embeddings")
        body: dict[str, Any] = recorded.body
        model = str(body.get("model", ""))
        if self.models is not None and model not in self.models:
            return self._error(_model_not_found(model))
        texts = _inputs(body.get("input"))
        dims = int(body.get("dimensions") or self.dims)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = embed(text, dims)
            encoded: Any = _to_base64(vector) if as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(len(_WORD.findall(text)) for text in texts)
        payload = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        if as_base64 and self.check_spec:
            # The spec describes float arrays only; check the same vectors in that form.
            plain = {
                **payload,
                "data": [
                    {**d, "embedding": embed(t, dims)} for d, t in zip(data, texts, strict=True)
                ],
            }
            self._check_json(plain, "/v1/embeddings", "post", 200)
        return self._json(payload, "/v1/embeddings", "post", check=not as_base64)

    async def _models(self, request: web.Request) -> web.StreamResponse:
        _, refused = await self._receive(request)
        if refused is not None:
            return refused
        if self._queues.models:
            return self._error(self._queues.models.popleft())
        names = sorted(self.models) if self.models is not None else list(DEFAULT_MODELS)
        data = [
            {"id": name, "object": "model", "created": MODELS_CREATED, "owned_by": "fake"}
            for name in names
        ]
        return self._json({"object": "list", "data": data}, "/v1/models", "get")

    # -- helpers --------------------------------------------------------------------------------

    async def _pause(self, seconds: float) -> None:
        if self._closing:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds if math.isfinite(seconds) else None):
                await self._release.wait()

    def _next_id(self) -> str:
        self._counter += 1
        return f"chatcmpl-fake{self._counter:06d}"

    def _json(
        self, payload: dict[str, Any], path: str, method: str, *, check: bool = True
    ) -> web.Response:
        if check and self.check_spec:
            self._check_json(payload, path, method, 200)
        return web.json_response(payload)

    def _check_json(self, payload: dict[str, Any], path: str, method: str, status: int) -> None:
        spec = _spec()
        raw = json.dumps(payload).encode()
        self._check(
            f"response {method.upper()} {path}",
            lambda: spec.check_response(spec.request_for(method, path, None), status, raw),
        )

    def _error(self, failure: Failure, *, spec_path: str | None = None) -> web.Response:
        payload = {
            "error": {
                "message": failure.message,
                "type": failure.type,
                "param": None,
                "code": failure.code,
            }
        }
        headers = {}
        if failure.retry_after is not None:
            headers["Retry-After"] = str(failure.retry_after)
        if self.check_spec:
            self._check(
                f"error {failure.status}", lambda: _spec().check_schema("ErrorResponse", payload)
            )
            if failure.status == 429 and spec_path is not None:
                spec = _spec()
                raw = json.dumps(payload).encode()
                self._check(
                    f"429 from {spec_path}",
                    lambda: spec.check_response(
                        spec.request_for("post", spec_path, None), 429, raw, headers=headers
                    ),
                )
        return web.json_response(payload, status=failure.status, headers=headers)

    def _check(self, where: str, check: Callable[[], None]) -> None:
        try:
            check()
        except Exception as err:
            detail = f"{type(err).__name__}: {err}"
            if err.__cause__ is not None:
                detail += f" ({err.__cause__})"
            self.violations.append(f"{where}: {detail[:VIOLATION_CHARS]}")


def embed(text: str, dims: int = DEFAULT_DIMS) -> list[float]:
    """A deterministic unit vector: hashed bag of words, so shared words mean nearby vectors."""
    vector = [0.0] * dims
    for word in _WORD.findall(text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        vector[int.from_bytes(digest, "little") % dims] += 1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:
        vector[0] = 1.0  # an empty text still gets a valid unit vector
        return vector
    return [v / norm for v in vector]


def _to_base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _inputs(value: Any) -> list[str]:
    # The API accepts a string, a list of strings, a token list, or a list of token lists.
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [" ".join(f"t{v}" for v in value)]
    if isinstance(value, list):
        return [v if isinstance(v, str) else " ".join(f"t{t}" for t in v) for v in value]
    return []


def _usage(body: dict[str, Any], text: str) -> dict[str, int]:
    prompt = sum(len(_WORD.findall(str(m.get("content", "")))) for m in body.get("messages", []))
    completion = len(_WORD.findall(text))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _error_type(status: int) -> str:
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def _model_not_found(model: str) -> Failure:
    return Failure(
        404,
        "model_not_found",
        f"The model `{model}` does not exist or you do not have access to it.",
    )


def _abort(request: web.Request) -> None:
    # Drop the connection without ending the chunked body: the client sees a broken stream.
    if request.transport is not None:
        request.transport.abort()


def _spec() -> Any:
    # Imported on first use: the benchmark process can run the fake without openapi-core.
    from tests.fakes import openai_spec

    return openai_spec


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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


if __name__ == "__main__":
    main()
