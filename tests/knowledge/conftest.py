"""Where the knowledge index lives for the tests that run against both: `index_at` gives the
settings that choose it, DATA_DIR's files (none) or a fresh PostgreSQL database (DATABASE_URL)."""

from __future__ import annotations

from typing import Any

import pytest

from bot.knowledge.postgres import SharedStorage
from tests.store_backends import TEST_SECRET


@pytest.fixture(params=["files", "postgres"])
def index_at(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Settings for one of the index's storages. With PostgreSQL a replica looks for a new
    version on every search here (it would every VERSION_CHECK_SECONDS) and waits until it is
    loaded (it would RELOAD_WAIT_SECONDS): the tests check what it sees, not how stale it may be."""
    if request.param == "files":
        return {}
    monkeypatch.setattr(SharedStorage, "check_every", 0.0)
    monkeypatch.setattr(SharedStorage, "reload_wait", None)
    return {"database_url": request.getfixturevalue("postgres_url"), "secret_key": TEST_SECRET}
