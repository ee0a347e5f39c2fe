"""Chat with any OpenAI-compatible endpoint through the official `openai` client.

Owns the timeouts (an idle timeout between chunks plus an overall cap, so a slow but steady
stream is never cut), the retries (only before the first byte: a retry mid-stream would repeat
text; a 429 only when its Retry-After is short, and never sooner than it asks), and the one
mapping from the endpoint's failures to the typed errors of `bot/errors.py`.
Error texts are built from status codes and error codes only, never from the response body, so a
key an endpoint echoes back cannot leak into logs or chat.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import TypeVar

import openai
from openai.types.chat import ChatCompletionMessageParam

from bot.errors import InvalidApiKey, ModelError, ModelTimeout, ModelUnavailable, RateLimited
from bot.retry_after import retry_after
from bot.settings import Settings

log = logging.getLogger(__name__)

Message = ChatCompletionMessageParam
T = TypeVar("T")

CONNECT_TIMEOUT = 10.0  # seconds to open a connection; the idle timeout covers the rest
RETRY_DELAYS = (0.5, 2.0)  # waits before retrying a refused connection or a 5xx, pre-first-byte
# A 429 asking for at most this many seconds is waited out and retried (within RETRY_DELAYS'
# count of retries); a longer wait fails the answer at once with the rate-limit notice, rather
# than leaving the person looking at a placeholder.
MAX_RETRY_AFTER = 10.0
KEY_CHECK_TIMEOUT = 20.0  # GET /models when an admin sets a key
CLIENT_CACHE_SIZE = 64  # clients kept (one per workspace key) to reuse their connections


class LLM:
    """Streams chat completions for any model name, with the caller's API key per call."""

    def __init__(self, settings: Settings, *, retry_delays: Sequence[float] = RETRY_DELAYS) -> None:
        self._settings = settings
        self._retry_delays = tuple(retry_delays)
        self._http: openai.DefaultAsyncHttpxClient | None = None
        self._clients: OrderedDict[str, openai.AsyncOpenAI] = OrderedDict()

    async def close(self) -> None:
        self._clients.clear()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> LLM:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _client(self, api_key: str) -> openai.AsyncOpenAI:
        client = self._clients.get(api_key)
        if client is not None:
            self._clients.move_to_end(api_key)
            return client
        if self._http is None:
            # One connection pool shared by every workspace's client.
            self._http = openai.DefaultAsyncHttpxClient()
        client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=self._settings.openai_base_url,
            # Our own timeouts govern the stream; the client's only bound the connection.
            timeout=openai.Timeout(self._settings.llm_total_timeout, connect=CONNECT_TIMEOUT),
            # Retries are ours (see _open): the client's would also sleep through 429s.
            max_retries=0,
            http_client=self._http,
        )
        self._clients[api_key] = client
        if len(self._clients) > CLIENT_CACHE_SIZE:
            self._clients.popitem(last=False)
        return client

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        api_key: str,
        model: str | None = None,
        max_tokens: int | None = None,
    ) -> AsyncIterator[str]:
        """Yield the answer's text deltas as they arrive; raises ModelError subclasses.

        `max_tokens` caps the answer (a model stopped by it ends normally, cut short)."""
        model = model or self._settings.chat_model
        deadline = _Deadline(self._settings)
        response = await self._open(self._client(api_key), messages, model, deadline, max_tokens)
        finished = False
        try:
            chunks = aiter(response)
            while True:
                try:
                    chunk = await deadline.wait(anext(chunks))
                except StopAsyncIteration:
                    break
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    if choice.delta.content:
                        yield choice.delta.content
                    finished = finished or choice.finish_reason is not None
        except openai.OpenAIError as error:
            raise typed_error(error, model) from None
        finally:
            await response.close()
        if not finished:
            # The connection ended cleanly but the model never said it was done.
            raise ModelUnavailable("the answer stream ended before the model finished")

    async def complete(
        self, messages: Sequence[Message], *, api_key: str, model: str | None = None
    ) -> str:
        """One non-streamed completion (short internal prompts); raises ModelError subclasses."""
        model = model or self._settings.chat_model
        deadline = _Deadline(self._settings)
        client = self._client(api_key)
        try:
            completion = await deadline.wait(
                client.chat.completions.create(model=model, messages=list(messages))
            )
        except openai.OpenAIError as error:
            raise typed_error(error, model) from None
        if not completion.choices:
            raise ModelUnavailable("the endpoint returned no choices")
        return completion.choices[0].message.content or ""

    async def _open(
        self,
        client: openai.AsyncOpenAI,
        messages: Sequence[Message],
        model: str,
        deadline: _Deadline,
        max_tokens: int | None,
    ) -> openai.AsyncStream[openai.types.chat.ChatCompletionChunk]:
        # max_completion_tokens, not the older max_tokens, which OpenAI's reasoning models refuse.
        limit = max_tokens if max_tokens else openai.omit
        for attempt in range(len(self._retry_delays) + 1):
            try:
                return await deadline.wait(
                    client.chat.completions.create(
                        model=model,
                        messages=list(messages),
                        stream=True,
                        max_completion_tokens=limit,
                    )
                )
            except (
                openai.APIConnectionError,
                openai.InternalServerError,
                openai.RateLimitError,
            ) as error:
                delay = self._retry_delay(error, attempt)
                if delay is None:
                    raise typed_error(error, model) from None
                log.warning(
                    "model endpoint failed (%s); retrying in %.1fs", _describe(error), delay
                )
                # A plain sleep: the deadline's next wait still enforces the overall cap.
                await asyncio.sleep(delay)
            except openai.OpenAIError as error:
                raise typed_error(error, model) from None
        raise AssertionError("unreachable")

    def _retry_delay(self, error: openai.OpenAIError, attempt: int) -> float | None:
        """Seconds to wait before trying again after `error`, or None to give up now."""
        if attempt == len(self._retry_delays) or isinstance(error, openai.APITimeoutError):
            return None
        delay = self._retry_delays[attempt]
        if not isinstance(error, openai.RateLimitError):
            return delay
        # A quota used up is no rate limit: waiting would not help.
        asked = retry_after(error.response.headers)
        if error.code == "insufficient_quota" or asked is None or asked > MAX_RETRY_AFTER:
            return None
        return max(asked, delay)


async def check_key(settings: Settings, api_key: str) -> list[str]:
    """List the endpoint's models with `api_key` (GET /models); raises ModelError subclasses."""
    async with openai.AsyncOpenAI(
        api_key=api_key,
        base_url=settings.openai_base_url,
        timeout=openai.Timeout(KEY_CHECK_TIMEOUT, connect=CONNECT_TIMEOUT),
        max_retries=0,
    ) as client:
        try:
            page = await client.models.list()
        except openai.OpenAIError as error:
            raise typed_error(error, None) from None
    return [model.id for model in page.data]


class _Deadline:
    """The two clocks of one request: time since the last chunk, and time since the start."""

    def __init__(self, settings: Settings) -> None:
        self._idle = settings.llm_idle_timeout
        self._total = settings.llm_total_timeout
        self._end = time.monotonic() + self._total

    async def wait(self, awaitable: Awaitable[T]) -> T:
        left = self._end - time.monotonic()
        capped = left < self._idle
        try:
            async with asyncio.timeout(max(0.0, min(self._idle, left))):
                return await awaitable
        except TimeoutError:
            if capped:
                raise ModelTimeout(f"the answer took longer than {self._total:g}s") from None
            raise ModelTimeout(f"the model sent nothing for {self._idle:g}s") from None


def typed_error(error: openai.OpenAIError, model: str | None) -> ModelError:
    """The bot's error for a failure of the endpoint; its text never quotes the response body."""
    what = _describe(error)
    if isinstance(error, openai.APITimeoutError):
        return ModelTimeout(f"the model endpoint timed out ({what})")
    if isinstance(error, openai.APIConnectionError):
        return ModelUnavailable(f"can't reach the model endpoint ({what})")
    if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
        return InvalidApiKey(f"the endpoint rejected the API key ({what})")
    if isinstance(error, openai.RateLimitError):
        return RateLimited(
            f"rate limited ({what})", retry_after=retry_after(error.response.headers)
        )
    if isinstance(error, openai.NotFoundError) or (
        isinstance(error, openai.APIStatusError) and "model" in (error.code or "")
    ):
        return ModelUnavailable(f"the endpoint doesn't serve model {model!r} ({what})")
    if isinstance(error, openai.APIStatusError) and error.status_code < 500:
        return ModelError(f"the endpoint refused the request ({what})")
    return ModelUnavailable(f"the model endpoint failed ({what})")


def _describe(error: openai.OpenAIError) -> str:
    if isinstance(error, openai.APIStatusError):
        return f"HTTP {error.status_code}" + (f", {error.code}" if error.code else "")
    if isinstance(error, openai.APIError) and error.code:
        return f"{type(error).__name__}, {error.code}"
    return type(error).__name__
