"""The fake OpenAI endpoint itself: its scripting API, its aiohttp app and the handlers of chat
completions, embeddings and the model list. Every request is recorded and, with `check_spec`,
checked with its answer against OpenAI's published description (`rules`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from tests.fakes.openai import rules
from tests.fakes.openai.script import (
    Failure,
    Queues,
    Reply,
    Script,
    error_type,
    model_not_found,
    outcome,
)
from tests.fakes.openai.stream import stream
from tests.fakes.openai.wire import (
    DEFAULT_DIMS,
    Recorded,
    abort,
    embed,
    inputs,
    to_base64,
    tokens,
    usage,
)

FAKE_KEY = "sk-fake-test-key-0001"
DEFAULT_MODELS = ("gpt-fake-mini", "text-embedding-fake")
MODELS_CREATED = 1_700_000_000  # a fixed "created" stamp keeps /models output deterministic


class FakeOpenAI:
    """The fake endpoint; `await start()` then point `OPENAI_BASE_URL` at `base_url`.

    `keys=None` accepts any bearer token; `models=None` serves any model name;
    `keep_requests=False` records no request in `requests` (a long benchmark would only grow it).
    Hooks for a subclass: `app()` (add routes) and `on_request()` (see each request).
    """

    def __init__(
        self,
        *,
        keys: Iterable[str] | None = (FAKE_KEY,),
        models: Iterable[str] | None = None,
        dims: int = DEFAULT_DIMS,
        default: Script | None = None,
        check_spec: bool = True,
        keep_requests: bool = True,
    ) -> None:
        self.keys: set[str] | None = set(keys) if keys is not None else None
        self.models: set[str] | None = set(models) if models is not None else None
        self.dims = dims
        self.default: Script = default if default is not None else Reply()
        self.check_spec = check_spec
        self.keep_requests = keep_requests
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self._queues = Queues()
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
        failure = Failure(status, code=code, retry_after=retry_after, type=error_type(status))
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
        """The fake's aiohttp app; a subclass may add routes to it."""
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

    def on_request(self, recorded: Recorded) -> None:
        """Called with every request as it arrives, before it is answered; does nothing here."""

    # -- handlers -------------------------------------------------------------------------------

    async def _receive(self, request: web.Request) -> tuple[Recorded, web.Response | None]:
        raw = await request.read()
        body = None
        if raw:
            with contextlib.suppress(ValueError):
                body = json.loads(raw)
        headers = {name.lower(): value for name, value in request.headers.items()}
        recorded = Recorded(request.method, request.path, headers, body)
        if self.keep_requests:
            self.requests.append(recorded)
        self.on_request(recorded)
        if self.check_spec:
            self._violation(rules.request_problem(request.method, request.path, raw, headers))
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
            return self._error(model_not_found(model))
        answer = outcome(self._queues.chat.popleft() if self._queues.chat else self.default, body)
        if isinstance(answer, Failure):
            return self._error(answer, spec_path="/v1/chat/completions")
        if body.get("stream"):
            check = self._check_chunk if self.check_spec else None
            return await stream(
                request, body, answer, next_id=self._next_id, check=check, pause=self._pause
            )
        if answer.fail_after is not None:
            abort(request)
            return web.Response()
        if answer.stall_after is not None:
            await self._pause(answer.stall)
        text = "".join(answer.chunks)
        completion = {
            "id": self._next_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "finish_reason": answer.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": usage(body, text),
        }
        return self._json(completion, "/v1/chat/completions", "post")

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        recorded, refused = await self._receive(request)
        if refused is not None:
            return refused
        if self._queues.embeddings:
            return self._error(self._queues.embeddings.popleft(), spec_path="/v1/embeddings")
        body: dict[str, Any] = recorded.body
        model = str(body.get("model", ""))
        if self.models is not None and model not in self.models:
            return self._error(model_not_found(model))
        texts = inputs(body.get("input"))
        dims = int(body.get("dimensions") or self.dims)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = embed(text, dims)
            encoded: Any = to_base64(vector) if as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        count = sum(tokens(text) for text in texts)
        payload = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": count, "total_tokens": count},
        }
        if as_base64 and self.check_spec:
            # The spec describes float arrays only; check the same vectors in that form.
            plain = {
                **payload,
                "data": [
                    {**d, "embedding": embed(t, dims)} for d, t in zip(data, texts, strict=True)
                ],
            }
            self._violation(rules.response_problem(plain, "/v1/embeddings", "post", 200))
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
            self._violation(rules.response_problem(payload, path, method, 200))
        return web.json_response(payload)

    def _error(self, failure: Failure, *, spec_path: str | None = None) -> web.Response:
        payload = failure.to_json()
        headers = {}
        if failure.retry_after is not None:
            headers["Retry-After"] = str(failure.retry_after)
        if self.check_spec:
            self.violations += rules.error_problems(payload, failure.status, spec_path, headers)
        return web.json_response(payload, status=failure.status, headers=headers)

    def _check_chunk(self, chunk: dict[str, Any]) -> None:
        self._violation(rules.chunk_problem(chunk))

    def _violation(self, problem: str | None) -> None:
        if problem is not None:
            self.violations.append(problem)
