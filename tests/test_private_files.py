"""Files at rest: DATA_DIR 0700; the database, its -wal and -shm, secret.key and the index files
0600. In-process (under a loose umask, as a test or an embedding application runs the core) for
the paths the core makes private itself, and through `bot ingest` for everything the command
writes under its umask."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.core import Core
from bot.private_files import create_private, private_dir, restrict_umask
from bot.settings import Settings
from bot.vault import SECRET_FILE_NAME
from tests.fakes.openai import FakeOpenAI

TIMEOUT = 120  # seconds for `bot ingest` (it loads the local embedding model)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The usual umask of a shell (0o022): files come out 0644 unless the code says otherwise."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.mark.usefixtures("loose_umask")
async def test_the_core_keeps_data_dir_database_and_secret_private(
    fake_settings: Settings,
) -> None:
    core = await Core.open(fake_settings)
    try:
        await core.store.set_api_key("slack:T1", "sk-anything-00000000")  # the WAL is in use
        data = fake_settings.data_dir
        assert mode(data) == 0o700
        for name in (SECRET_FILE_NAME, "bot.db", "bot.db-wal", "bot.db-shm"):
            assert mode(data / name) == 0o600, name
    finally:
        await core.close()


@pytest.mark.usefixtures("loose_umask")
async def test_an_older_install_is_narrowed_when_the_core_opens_it(
    fake_settings: Settings,
) -> None:
    data = fake_settings.data_dir
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)  # noqa: S103 - an older install, to be narrowed
    # An older bot still running: its database in WAL mode, side files 0644 like the database.
    older = sqlite3.connect(data / "bot.db")
    older.execute("PRAGMA journal_mode = WAL")
    older.execute("CREATE TABLE t (x)")
    for name in ("bot.db", "bot.db-wal", "bot.db-shm"):
        os.chmod(data / name, 0o644)
    try:
        core = await Core.open(fake_settings)
        await core.close()
        assert mode(data) == 0o700
        for name in ("bot.db", "bot.db-wal", "bot.db-shm"):
            assert mode(data / name) == 0o600, name
    finally:
        older.close()


def test_private_dir_creates_and_narrows(tmp_path: Path) -> None:
    nested = private_dir(tmp_path / "a" / "b")
    assert mode(nested) == 0o700
    wide = tmp_path / "wide"
    wide.mkdir()
    os.chmod(wide, 0o775)  # noqa: S103 - to be narrowed
    private_dir(wide)
    assert mode(wide) == 0o700
    strict = tmp_path / "strict"
    strict.mkdir(mode=0o500)
    private_dir(strict)
    assert mode(strict) == 0o500  # only ever narrowed
    strict.chmod(0o700)


@pytest.mark.usefixtures("loose_umask")
def test_create_private_makes_a_0600_file_once(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    assert create_private(path, b"first") is True
    assert create_private(path, b"second") is False
    assert path.read_bytes() == b"first"
    assert mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]


@pytest.mark.parametrize(("before", "after"), [(0o022, 0o077), (0o027, 0o077), (0o277, 0o277)])
def test_restrict_umask_only_narrows(before: int, after: int) -> None:
    previous = os.umask(before)
    try:
        restrict_umask()
        assert os.umask(previous) == after
    finally:
        os.umask(previous)


async def test_bot_ingest_writes_nothing_others_can_read(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    knowledge = tmp_path / "knowledge"
    knowledge.mkdir()
    (knowledge / "relay.md").write_text("# Relay\n\nThe relay listens on port 7443.\n")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DATA_DIR": str(tmp_path / "data"),
        "KNOWLEDGE_DIR": str(knowledge),
        "OPENAI_BASE_URL": fake_openai.base_url,
        "LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "ingest",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # The shell's usual umask: the command has to narrow it itself.
        preexec_fn=lambda: os.umask(0o022),
    )
    _, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert process.returncode == 0, err.decode()
    data = tmp_path / "data"
    written = [data, *data.rglob("*")]
    assert any("index" in p.parts for p in written)  # the index is there to check
    for path in written:
        assert mode(path) == (0o700 if path.is_dir() else 0o600), path
