"""The web chat's test fixtures, once: a small core over the real store (a fake conversation
that streams like the real one, a fake key check), the chat served on loopback, and the helpers a
browser-like client needs (its origin, the API headers, loading the page, reading answer frames).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from adapters.web.routes import add_web_routes
from adapters.web.sessions import CSRF_HEADER, SESSION_COOKIE
from bot.citations import Source
from bot.errors import InputError, InvalidApiKey, ModelUnavailable
from bot.keys import KeyPolicy, KeyStatus
from bot.settings import Settings
from bot.store import Store, StoredMessage
from bot.surface import Final, Surface
from bot.vault import Vault, last4

WAIT = 10.0  # generous: a wait that times out is a failure, never a pass

# -- a small core with the real store ----------------------------------------------------------


@dataclass
class FakeConversations:
    """Streams `deltas` through the surface like the real core: placeholder, edits, final."""

    store: Store
    deltas: Sequence[str] = ("Hello", " from", " the **bot**.")
    sources: Sequence[Source] = (Source(1, "guide.md", "Setup", "Install it."),)
    gate: asyncio.Event | None = None  # when set, the stream waits for it after the first delta
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def reply(
        self,
        *,
        surface: Surface,
        thread_key: str,
        workspace: str,
        question: str,
        author: str | None = None,
        event_id: str | None = None,
    ) -> int:
        self.calls.append(
            {
                "thread_key": thread_key,
                "workspace": workspace,
                "question": question,
                "author": author,
            }
        )
        message_id = await surface.post("_Thinking…_")
        text = ""
        for number, delta in enumerate(self.deltas):
            text += delta
            await surface.edit(message_id, surface.render(text))
            if number == 0 and self.gate is not None:
                await self.gate.wait()
        answer_id = await self.store.record_exchange(
            thread_key=thread_key,
            workspace=workspace,
            question=question,
            answer=text,
            sources=self.sources,
            status="done",
            author=author,
        )
        footer = surface.footer(self.sources)
        final_text = f"{text}\n\n{footer}" if footer else text
        await surface.edit(message_id, final_text, final=Final(answer_id, tuple(self.sources)))
        return answer_id

    async def history(self, thread_key: str, limit: int | None = None) -> list[StoredMessage]:
        return await self.store.thread_messages(thread_key, limit=limit)

    async def feedback(self, answer_id: int, value: int, *, user: str, workspace: str) -> bool:
        return await self.store.set_feedback(answer_id, value, user=user, workspace=workspace)


@dataclass
class FakeKeys:
    """KeyAdmin's contract: keys starting "sk-good" validate; "sk-down" finds the endpoint down."""

    store: Store
    settings: Settings

    async def set(self, workspace: str, key: str, *, by: str | None) -> str:
        key = key.strip()
        if not key or any(c.isspace() for c in key):
            raise InputError("Paste the whole API key, with no spaces.")
        if key.startswith("sk-down"):
            raise ModelUnavailable("connection refused")
        if not key.startswith("sk-good"):
            raise InvalidApiKey("401")
        await self.store.set_api_key(workspace, key, set_by=by)
        return last4(key)

    async def clear(self, workspace: str) -> bool:
        return await self.store.delete_api_key(workspace)

    async def status(self, workspace: str) -> KeyStatus:
        keys = await KeyPolicy(self.settings, self.store).keys(workspace)  # the real policy
        return KeyStatus(keys.source, keys.last4)


@dataclass
class FakeCore:
    settings: Settings
    store: Store
    conversations: FakeConversations
    keys: FakeKeys


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "bot.db", Vault(b"k" * 32))
    yield opened
    await opened.close()


@pytest.fixture
def core(tmp_path: Path, store: Store) -> FakeCore:
    settings = Settings(_env_file=None, data_dir=tmp_path, openai_api_key=None)
    return FakeCore(settings, store, FakeConversations(store), FakeKeys(store, settings))


@pytest.fixture
async def client(core: FakeCore) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    add_web_routes(app, core.settings, core)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


def origin(client: TestClient[Any, Any]) -> str:
    return str(client.make_url("/")).rstrip("/")


def api_headers(client: TestClient[Any, Any]) -> dict[str, str]:
    return {CSRF_HEADER: "1", "Origin": origin(client)}


async def open_page(client: TestClient[Any, Any]) -> str:
    """Load the page like a browser; returns the session cookie it was given."""
    response = await client.get("/")
    assert response.status == 200
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))[SESSION_COOKIE]
    return cookie.value


async def frames_until_final(ws: Any) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while True:
        message = await asyncio.wait_for(ws.receive(), WAIT)
        assert message.type == WSMsgType.TEXT, message
        frame = json.loads(message.data)
        frames.append(frame)
        if frame.get("final") or frame["type"] == "error":
            return frames
