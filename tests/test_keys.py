"""bot/keys.py: /setkey validates with the endpoint, stores encrypted, and never leaks the key."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator

import pytest

from bot.errors import InputError, InvalidApiKey, ModelUnavailable
from bot.keys import MAX_KEY_LENGTH, KeyAdmin, listed
from bot.settings import Settings
from bot.store import Store
from tests.fakes.openai import FAKE_KEY, FakeOpenAI
from tests.store_backends import Backend

WORKSPACE = "slack:T1"
GOOD_KEY = "sk-proj-Workspace1Key0000AbCd"


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    """On SQLite and on PostgreSQL."""
    store = await backend.open()
    yield store
    await store.close()


@pytest.fixture
def admin(fake_settings: Settings, store: Store, fake_openai: FakeOpenAI) -> KeyAdmin:
    assert fake_openai.keys is not None
    fake_openai.keys.add(GOOD_KEY)
    return KeyAdmin(fake_settings, store)


async def test_set_validates_then_stores_and_reports_last4(
    admin: KeyAdmin, store: Store, fake_openai: FakeOpenAI
) -> None:
    assert (await admin.status(WORKSPACE)).last4 is None
    assert await admin.set(WORKSPACE, f"  {GOOD_KEY}\n", by="U123") == "AbCd"
    (request,) = fake_openai.requests
    assert (request.method, request.path, request.api_key) == ("GET", "/v1/models", GOOD_KEY)
    assert await store.get_api_key(WORKSPACE) == GOOD_KEY
    assert (await admin.status(WORKSPACE)).last4 == "AbCd"
    assert (await admin.status("discord:99")).last4 is None


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        ("", "Paste the API key"),
        (" \t\n", "Paste the API key"),
        ("sk-abc def", "contains spaces"),
        ("sk-abc\x00def", "characters a key can't have"),
        ("sk-ключ-123", "characters a key can't have"),
        ("sk-" + "a" * MAX_KEY_LENGTH, "longer than"),
    ],
)
async def test_garbled_input_is_refused_with_a_clear_message(
    admin: KeyAdmin, store: Store, fake_openai: FakeOpenAI, raw: str, complaint: str
) -> None:
    with pytest.raises(InputError) as caught:
        await admin.set(WORKSPACE, raw, by="U123")
    assert complaint in caught.value.user_message
    assert fake_openai.requests == []
    assert await store.get_api_key(WORKSPACE) is None


async def test_rejected_key_is_not_stored_and_the_old_one_stays(
    admin: KeyAdmin, store: Store
) -> None:
    await admin.set(WORKSPACE, GOOD_KEY, by="U123")
    wrong = "sk-proj-TypoInTheKey0000WXYZ"
    with pytest.raises(InvalidApiKey) as caught:
        await admin.set(WORKSPACE, wrong, by="U123")
    assert wrong not in str(caught.value)
    assert await store.get_api_key(WORKSPACE) == GOOD_KEY


async def test_unreachable_endpoint_is_unavailable_and_nothing_is_stored(
    fake_settings: Settings, store: Store
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = fake_settings.model_copy(update={"openai_base_url": f"http://127.0.0.1:{port}/v1"})
    with pytest.raises(ModelUnavailable):
        await KeyAdmin(settings, store).set(WORKSPACE, GOOD_KEY, by="U123")
    assert await store.get_api_key(WORKSPACE) is None


async def test_clear_removes_the_key(admin: KeyAdmin) -> None:
    assert await admin.clear(WORKSPACE) is False
    await admin.set(WORKSPACE, FAKE_KEY, by="U123")
    assert await admin.clear(WORKSPACE) is True
    assert (await admin.status(WORKSPACE)).last4 is None
    assert await admin.clear(WORKSPACE) is False


async def test_key_never_reaches_logs_or_the_database(
    admin: KeyAdmin, store: Store, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await admin.set(WORKSPACE, GOOD_KEY, by="U123")
    await admin.status(WORKSPACE)
    with pytest.raises(InvalidApiKey):
        await admin.set("slack:T2", "sk-proj-AnotherSecretKey9999", by="U7")
    assert caplog.records, "nothing was logged, so this test would prove nothing"
    assert GOOD_KEY not in caplog.text
    assert "sk-proj-AnotherSecretKey9999" not in caplog.text

    stored = await backend.scalar(
        "SELECT ciphertext FROM api_keys WHERE workspace = ?", (WORKSPACE,)
    )
    assert stored is not None and GOOD_KEY.encode() not in bytes(stored)
    if backend.kind == "sqlite":

        def database_bytes() -> bytes:
            files = backend.data_dir.glob("bot.db*")  # the file, its WAL and index
            return b"".join(file.read_bytes() for file in files)

        assert b"slack:T1" in database_bytes()  # the row is there, in some file we read
        assert GOOD_KEY.encode() not in database_bytes()
        await store.close()  # checkpoints the WAL into the main file
        assert GOOD_KEY.encode() not in database_bytes()


async def test_clear_within_forgets_an_org_and_its_workspaces_only(
    admin: KeyAdmin, store: Store
) -> None:
    for workspace in ("slack:E1", "slack:E1:T1", "slack:E1:T2", "slack:E10:T1", "slack:T1"):
        await store.set_api_key(workspace, GOOD_KEY)
    assert await admin.clear_within("slack:E1") == 3
    assert [(await admin.status(w)).last4 for w in ("slack:E1", "slack:E1:T1", "slack:E1:T2")] == [
        None,
        None,
        None,
    ]
    assert (await admin.status("slack:E10:T1")).last4 == "AbCd"  # a prefix of the id is not the org
    assert (await admin.status("slack:T1")).last4 == "AbCd"
    assert await admin.clear_within("slack:E1") == 0


@pytest.mark.parametrize(
    ("workspace", "entries", "expected"),
    [
        ("slack:T1", ["slack:T1"], True),
        ("slack:E1:T2", ["slack:E1"], True),  # the org names every workspace in it
        ("slack:E1:T2", ["slack:T2"], True),  # the team alone names it too
        ("slack:E10:T2", ["slack:E1"], False),  # a prefix of an id is not the id
        ("slack:T2", ["slack:E1"], False),
        ("discord:123", ["discord:1234"], False),
        ("web:local", ["web:local"], True),
    ],
)
def test_listed_names_a_workspace_exactly_by_its_org_or_by_its_team(
    workspace: str, entries: list[str], expected: bool
) -> None:
    assert listed(workspace, entries) is expected
