"""Shared fixtures: no network beyond loopback, the OpenAI-compatible fake, settings aimed at it,
a real PostgreSQL server with a fresh database per test, and a real Redis server with a fresh
database per test."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.settings import Settings
from tests.fakes.openai import FakeOpenAI
from tests.postgres import PostgresServer
from tests.redis_server import RedisServer
from tests.store_backends import Backend

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def _guarded_connect(connect: Any) -> Any:
    def guarded(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
            raise AssertionError(f"a test tried to reach {address[0]}")
        return connect(self, address)

    return guarded


@pytest.fixture(autouse=True, scope="session")
def loopback_only() -> Iterator[None]:
    """The whole session, fixtures shared by many tests included: fail if anything in this
    process (a tokenizer, a model hub, a client with a default URL) tries to leave the machine."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", _guarded_connect(socket.socket.connect))
        yield


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    """A running fake; the test fails if any traffic broke OpenAI's published spec."""
    fake = FakeOpenAI()
    await fake.start()
    yield fake
    await fake.close()
    assert fake.violations == [], "traffic broke the OpenAI spec"


@pytest.fixture
def fake_settings(tmp_path: Path, fake_openai: FakeOpenAI) -> Settings:
    """Settings aimed at the fake, with no fallback key and data under tmp_path."""
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        knowledge_dir=tmp_path / "knowledge",
        openai_base_url=fake_openai.base_url,
        openai_api_key=None,
        chat_model="gpt-fake-mini",
        embed_model="text-embedding-fake",
    )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server (tests/postgres.py), started on first use."""
    server = PostgresServer.start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty PostgreSQL database for this test, as a postgresql:// URL."""
    return postgres_server.create_database()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's Redis server (tests/redis_server.py), started on first use."""
    server = RedisServer.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A fresh, empty Redis database for this test, as a redis:// URL."""
    return redis_server.fresh_url()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each of the store's databases in turn (tests/store_backends.py); PostgreSQL's server is
    started only when a test runs against it."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    return Backend(request.param, tmp_path / "data", url)
