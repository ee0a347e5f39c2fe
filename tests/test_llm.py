"""bot/llm.py against the loopback fake: streaming, each typed error, and both timeouts."""

from __future__ import annotations

import logging
import math
import socket
import time
from collections.abc import AsyncIterator

import pytest

from bot.errors import (
    InvalidApiKey,
    ModelError,
    ModelTimeout,
    ModelUnavailable,
    RateLimited,
)
from bot.llm import LLM, MAX_RETRY_AFTER, Message, check_key
from bot.settings import Settings
from tests.fakes.openai import FAKE_KEY, FakeOpenAI

QUESTION: list[Message] = [{"role": "user", "content": "What is the refund window?"}]
NO_RETRY_WAIT = (0.0, 0.0)


@pytest.fixture
async def llm(fake_settings: Settings) -> AsyncIterator[LLM]:
    async with LLM(fake_settings, retry_delays=NO_RETRY_WAIT) as llm:
        yield llm


async def collect(
    llm: LLM, seen: list[str], *, key: str = FAKE_KEY, model: str | None = None
) -> None:
    async for delta in llm.stream(QUESTION, api_key=key, model=model):
        seen.append(delta)


async def test_deltas_arrive_in_order_with_the_key_and_model(
    llm: LLM, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply("Refunds ", "take ", "30 days ", "[1].")
    seen: list[str] = []
    await collect(llm, seen, model="my-local/llama-3:8b")
    assert seen == ["Refunds ", "take ", "30 days ", "[1]."]
    (request,) = fake_openai.chat_requests
    assert request.api_key == FAKE_KEY
    assert request.body["model"] == "my-local/llama-3:8b"
    assert request.body["stream"] is True
    assert request.messages == QUESTION


async def test_each_call_sends_its_own_key(llm: LLM, fake_openai: FakeOpenAI) -> None:
    assert fake_openai.keys is not None
    fake_openai.keys.add("sk-other-workspace-key")
    await collect(llm, [], key=FAKE_KEY)
    await collect(llm, [], key="sk-other-workspace-key")
    await collect(llm, [], key=FAKE_KEY)
    assert [r.api_key for r in fake_openai.chat_requests] == [
        FAKE_KEY,
        "sk-other-workspace-key",
        FAKE_KEY,
    ]


async def test_complete_returns_the_whole_text(llm: LLM, fake_openai: FakeOpenAI) -> None:
    fake_openai.reply("a standalone ", "question")
    assert await llm.complete(QUESTION, api_key=FAKE_KEY) == "a standalone question"
    assert "stream" not in fake_openai.chat_requests[0].body


async def test_complete_maps_a_dropped_connection(llm: LLM, fake_openai: FakeOpenAI) -> None:
    fake_openai.reply("never", fail_after=0)
    with pytest.raises(ModelUnavailable):
        await llm.complete(QUESTION, api_key=FAKE_KEY)


async def test_rejected_key_is_invalid_and_never_quoted(
    llm: LLM, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bad_key = "sk-not-a-real-key-but-secret-7777"
    with pytest.raises(InvalidApiKey) as caught:
        await collect(llm, [], key=bad_key)
    # The fake echoes the key in its error body, as some endpoints do; we must not pass it on.
    assert bad_key not in str(caught.value)
    assert bad_key not in caught.value.user_message
    assert bad_key not in caplog.text
    assert "401" in str(caught.value)


async def test_429_asking_for_a_long_wait_is_rate_limited_at_once(
    llm: LLM, fake_openai: FakeOpenAI
) -> None:
    fake_openai.fail(429, code="rate_limit_exceeded", retry_after=int(MAX_RETRY_AFTER) + 1)
    with pytest.raises(RateLimited) as caught:
        await collect(llm, [])
    assert caught.value.retry_after == MAX_RETRY_AFTER + 1
    assert len(fake_openai.chat_requests) == 1


async def test_429_asking_for_a_short_wait_is_retried_no_sooner_than_asked(
    llm: LLM, fake_openai: FakeOpenAI
) -> None:
    fake_openai.fail(429, code="rate_limit_exceeded", retry_after=1)
    fake_openai.reply("after ", "the wait")
    seen: list[str] = []
    started = time.monotonic()
    await collect(llm, seen)
    assert seen == ["after ", "the wait"]
    assert len(fake_openai.chat_requests) == 2
    assert time.monotonic() - started >= 1.0


@pytest.mark.parametrize("retry_after", [None, 1])
async def test_429_without_a_wait_or_for_a_spent_quota_is_not_retried(
    llm: LLM, fake_openai: FakeOpenAI, retry_after: int | None
) -> None:
    code = "rate_limit_exceeded" if retry_after is None else "insufficient_quota"
    fake_openai.fail(429, code=code, retry_after=retry_after)
    with pytest.raises(RateLimited):
        await collect(llm, [])
    assert len(fake_openai.chat_requests) == 1


async def test_unknown_model_is_unavailable(llm: LLM, fake_openai: FakeOpenAI) -> None:
    fake_openai.models = {"gpt-fake-mini"}
    with pytest.raises(ModelUnavailable) as caught:
        await collect(llm, [], model="gpt-that-does-not-exist")
    assert "gpt-that-does-not-exist" in str(caught.value)
    assert "404" in str(caught.value)


async def test_server_error_is_retried_before_the_first_byte(
    llm: LLM, fake_openai: FakeOpenAI
) -> None:
    fake_openai.fail(500)
    fake_openai.reply("fine ", "now")
    seen: list[str] = []
    await collect(llm, seen)
    assert seen == ["fine ", "now"]
    assert len(fake_openai.chat_requests) == 2


async def test_persistent_server_error_is_unavailable(llm: LLM, fake_openai: FakeOpenAI) -> None:
    for _ in range(len(NO_RETRY_WAIT) + 1):
        fake_openai.fail(500)
    with pytest.raises(ModelUnavailable):
        await collect(llm, [])
    assert len(fake_openai.chat_requests) == len(NO_RETRY_WAIT) + 1


async def test_connection_refused_is_unavailable(fake_settings: Settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on `port` now.
    settings = fake_settings.model_copy(update={"openai_base_url": f"http://127.0.0.1:{port}/v1"})
    async with LLM(settings, retry_delays=NO_RETRY_WAIT) as llm:
        with pytest.raises(ModelUnavailable):
            await collect(llm, [])


async def test_mid_stream_failure_raises_after_the_partial_text(
    llm: LLM, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply("The refund ", "window is ", "30 days.", fail_after=2)
    seen: list[str] = []
    with pytest.raises(ModelUnavailable):
        await collect(llm, seen)
    assert seen == ["The refund ", "window is "]
    assert len(fake_openai.chat_requests) == 1  # never retried mid-stream: no duplicated text


async def test_stalled_stream_hits_the_idle_timeout(
    fake_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    settings = fake_settings.model_copy(update={"llm_idle_timeout": 0.3})
    fake_openai.reply("Partial ", "never sent", stall_after=1, stall=math.inf)
    seen: list[str] = []
    async with LLM(settings) as llm:
        with pytest.raises(ModelTimeout) as caught:
            await collect(llm, seen)
    assert seen == ["Partial "]
    assert "nothing for 0.3s" in str(caught.value)


async def test_slow_steady_stream_outlives_the_idle_timeout(
    fake_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    # Twelve chunks 0.1 s apart take about twice the idle timeout; no gap comes near it.
    settings = fake_settings.model_copy(update={"llm_idle_timeout": 0.6})
    words = [f"w{i} " for i in range(12)]
    fake_openai.reply(*words, interval=0.1)
    seen: list[str] = []
    async with LLM(settings) as llm:
        await collect(llm, seen)
    assert seen == words


async def test_overall_cap_ends_an_endless_stream(
    fake_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    settings = fake_settings.model_copy(update={"llm_idle_timeout": 0.6, "llm_total_timeout": 1.0})
    fake_openai.reply(*(["more "] * 1000), interval=0.05)
    seen: list[str] = []
    async with LLM(settings) as llm:
        with pytest.raises(ModelTimeout) as caught:
            await collect(llm, seen)
    assert "longer than 1s" in str(caught.value)
    assert 0 < len(seen) < 1000


async def test_check_key_lists_models_and_maps_errors(
    fake_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    assert await check_key(fake_settings, FAKE_KEY) == ["gpt-fake-mini", "text-embedding-fake"]
    with pytest.raises(InvalidApiKey):
        await check_key(fake_settings, "sk-wrong-key-123456")
    fake_openai.fail(500, endpoint="models")
    with pytest.raises(ModelError):
        await check_key(fake_settings, FAKE_KEY)
