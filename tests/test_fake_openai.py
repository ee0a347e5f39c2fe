"""The fake OpenAI endpoint speaks the real protocol: the real client works against it, and its
traffic matches OpenAI's published spec (the checker itself is shown to catch mismatches)."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import openai
import pytest

from tests.fakes.openai import FAKE_KEY, FakeOpenAI, Reply, embed
from tests.fakes.openai.spec import check_schema

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
async def client(fake_openai: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        api_key=FAKE_KEY, base_url=fake_openai.base_url, max_retries=0
    ) as client:
        yield client


async def test_stream_sends_role_deltas_stop_and_done(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply("Hel", "lo", " there")
    body = {"model": "any-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{fake_openai.base_url}/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {FAKE_KEY}"},
        ) as response,
    ):
        assert response.content_type == "text/event-stream"
        raw = (await response.read()).decode()
    events = [line.removeprefix("data: ") for line in raw.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    for chunk in chunks:
        check_schema("CreateChatCompletionStreamResponse", chunk)
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    assert deltas[0]["role"] == "assistant"
    assert [d.get("content") for d in deltas[1:-1]] == ["Hel", "lo", " there"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert {chunk["id"] for chunk in chunks} == {chunks[0]["id"]}


async def test_real_client_streams_and_fake_records_the_request(
    fake_openai: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake_openai.reply("one ", "two ", "three")
    stream = await client.chat.completions.create(
        model="some-model-name",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text = [c.choices[0].delta.content async for c in stream if c.choices]
    assert "".join(t or "" for t in text) == "one two three"
    (request,) = fake_openai.chat_requests
    assert request.api_key == FAKE_KEY
    assert request.headers["authorization"] == f"Bearer {FAKE_KEY}"
    assert request.messages[-1] == {"role": "user", "content": "count"}
    assert request.body["model"] == "some-model-name"


async def test_non_stream_completion_and_scripted_function(
    fake_openai: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake_openai.reply_with(lambda body: ["echo: ", body["messages"][-1]["content"]])
    completion = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "ping"}]
    )
    assert completion.choices[0].message.content == "echo: ping"
    assert completion.choices[0].finish_reason == "stop"


async def test_embeddings_are_deterministic_in_float_and_base64(
    fake_openai: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    texts = ["refund policy for orders", "orders refund", "the weather in Oslo"]
    # The client asks for base64 by default and decodes it; the float form must agree.
    default = await client.embeddings.create(model="e", input=texts)
    floats = await client.embeddings.create(model="e", input=texts, encoding_format="float")
    vectors = [item.embedding for item in default.data]
    for got, want in zip(vectors, (item.embedding for item in floats.data), strict=True):
        assert got == pytest.approx(want, abs=1e-6)
    assert vectors[0] == pytest.approx(embed(texts[0]), abs=1e-6)
    assert len(vectors[0]) == fake_openai.dims
    assert math.isclose(sum(v * v for v in vectors[0]), 1.0, rel_tol=1e-5)

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    small = await client.embeddings.create(model="e", input="x", dimensions=8)
    assert len(small.data[0].embedding) == 8


async def test_models_lists_configured_names(client: openai.AsyncOpenAI) -> None:
    page = await client.models.list()
    assert [m.id for m in page.data] == ["gpt-fake-mini", "text-embedding-fake"]


async def test_unknown_key_gets_401_in_openai_error_shape(fake_openai: FakeOpenAI) -> None:
    async with openai.AsyncOpenAI(
        api_key="sk-wrong", base_url=fake_openai.base_url, max_retries=0
    ) as bad:
        with pytest.raises(openai.AuthenticationError) as caught:
            await bad.models.list()
    assert caught.value.code == "invalid_api_key"
    check_schema("ErrorResponse", caught.value.response.json())


async def test_scripted_failures(fake_openai: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": "q"}
    ]
    fake_openai.fail(429, retry_after=7)
    with pytest.raises(openai.RateLimitError) as limited:
        await client.chat.completions.create(model="m", messages=messages, stream=True)
    assert limited.value.response.headers["retry-after"] == "7"

    fake_openai.models = {"gpt-fake-mini"}
    with pytest.raises(openai.NotFoundError) as missing:
        await client.chat.completions.create(model="gpt-nope", messages=messages)
    assert missing.value.code == "model_not_found"

    fake_openai.fail(500)
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="gpt-fake-mini", messages=messages)

    fake_openai.fail(503, endpoint="embeddings")
    with pytest.raises(openai.InternalServerError):
        await client.embeddings.create(model="gpt-fake-mini", input="x")


async def test_fail_after_cuts_the_stream(
    fake_openai: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake_openai.reply("a", "b", "c", "d", fail_after=2)
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "q"}], stream=True
    )
    seen: list[str] = []

    async def read_all() -> None:
        async for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")

    with pytest.raises(openai.APIConnectionError):
        await read_all()
    assert "".join(seen) == "ab"


async def test_stall_holds_a_chunk_until_released(
    fake_openai: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake_openai.reply("first", "second", stall_after=1, stall=math.inf)
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "q"}], stream=True
    )
    chunks = aiter(stream)
    await anext(chunks)  # role
    assert (await anext(chunks)).choices[0].delta.content == "first"
    pending = asyncio.ensure_future(anext(chunks))
    done, _ = await asyncio.wait({pending}, timeout=0.2)
    assert not done, "the stalled chunk arrived before release()"
    fake_openai.release()
    assert (await pending).choices[0].delta.content == "second"
    await stream.close()


async def test_spec_checker_catches_bad_responses_and_requests() -> None:
    async with FakeOpenAI(default=Reply(chunks=("x",), finish_reason="bogus")) as fake:
        body = {"model": "m", "messages": [{"role": "wizard", "content": "hi"}], "stream": True}
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{fake.base_url}/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {FAKE_KEY}"},
            ) as response,
        ):
            await response.read()
    assert any(v.startswith("request POST") for v in fake.violations)
    assert any(v.startswith("stream chunk") and "bogus" in v for v in fake.violations)


async def test_runs_in_its_own_process() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.openai", "--port", "0", "--key", "sk-bench",
        cwd=ROOT, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
        base_url = line.decode().strip().removeprefix("FAKE_OPENAI_URL=")
        async with openai.AsyncOpenAI(api_key="sk-bench", base_url=base_url) as client:
            stream = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "q"}], stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream])
        assert text == "This is the fake model's answer [1]."
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0
