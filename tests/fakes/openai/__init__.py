"""A loopback OpenAI-compatible server that the real `openai` client talks to (tests, benchmarks).

It speaks the wire protocol (SSE chat streams ending in `data: [DONE]`, JSON completions,
embeddings, the model list, OpenAI's error JSON), records every request, and is scripted per
test: queue replies or failures, cut a stream after N chunks, stall it, pace it. With
`check_spec` (the default) every request it receives and every response it sends is checked
against OpenAI's published OpenAPI description; mismatches collect in `violations`.

    server.py   FakeOpenAI: scripting, the aiohttp app, the handlers
    stream.py   a chat completion as server-sent events
    script.py   Reply, Failure and the per-endpoint queues
    wire.py     Recorded requests, hash embeddings, token counts
    rules.py    the spec checks; spec.py loads OpenAI's OpenAPI file
    process.py  `python -m tests.fakes.openai --port P` (prints `FAKE_OPENAI_URL=...`)
"""

from tests.fakes.openai.process import main, serve
from tests.fakes.openai.script import DEFAULT_REPLY, Failure, Reply, Script
from tests.fakes.openai.server import DEFAULT_MODELS, FAKE_KEY, FakeOpenAI
from tests.fakes.openai.wire import DEFAULT_DIMS, Recorded, embed

__all__ = [
    "DEFAULT_DIMS",
    "DEFAULT_MODELS",
    "DEFAULT_REPLY",
    "FAKE_KEY",
    "Failure",
    "FakeOpenAI",
    "Recorded",
    "Reply",
    "Script",
    "embed",
    "main",
    "serve",
]
