"""What of KNOWLEDGE_DIR is indexed: only regular files that really live inside it, none too big.

Whatever is indexed is quoted back to anyone who asks (the keyless answer prints passages), so a
link out of the folder must never be followed: not to the process's environment, not to
DATA_DIR's secret key or database.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

import bot.knowledge.chunking as chunking
from bot.knowledge import Knowledge
from bot.settings import Settings

SECRET = "sk-live-do-not-leak-0123456789"


def settings_for(tmp_path: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]  # pydantic-settings' own argument
        _env_file=None,
        data_dir=tmp_path / "data",
        knowledge_dir=tmp_path / "kb",
        openai_api_key=None,
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    kb = tmp_path / "kb"
    (kb / "guides").mkdir(parents=True)
    (kb / "guides" / "setup.md").write_text("# Setup\n\nRun the installer, then sign in.\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.txt").write_text(f"The production key is {SECRET}.\n")
    (outside / "notes.md").write_text(f"# Notes\n\nKey: {SECRET}\n")
    return kb


async def index(tmp_path: Path) -> tuple[Knowledge, list[str]]:
    knowledge = Knowledge(settings_for(tmp_path))
    report = await knowledge.refresh()
    return knowledge, sorted(report.added)


async def test_links_out_of_the_folder_are_skipped_and_named_in_the_log(
    tmp_path: Path, folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    os.symlink(tmp_path / "elsewhere" / "secret.txt", folder / "env.txt")
    os.symlink("/proc/self/environ", folder / "environ.txt")
    os.symlink(tmp_path / "elsewhere", folder / "linked-folder")
    os.symlink(tmp_path / "data" / "secret.key", folder / "dangling.txt")  # not there (yet)
    with caplog.at_level(logging.WARNING, logger="bot.knowledge.chunking"):
        knowledge, added = await index(tmp_path)
    found = await knowledge.retrieve("production key", api_key=None, top_k=5)
    await knowledge.close()

    assert added == ["guides/setup.md"]
    assert all(SECRET not in passage.text for passage in found.passages)
    for name in ("env.txt", "environ.txt", "linked-folder", "dangling.txt"):
        assert str(folder / name) in caplog.text, name


async def test_a_link_that_stays_inside_the_folder_is_indexed(tmp_path: Path, folder: Path) -> None:
    os.symlink(folder / "guides" / "setup.md", folder / "start-here.md")
    knowledge, added = await index(tmp_path)
    await knowledge.close()
    assert added == ["guides/setup.md", "start-here.md"]


async def test_a_file_over_the_size_limit_is_skipped(
    tmp_path: Path, folder: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(chunking, "MAX_FILE_BYTES", 1 << 20)
    (folder / "dump.txt").write_bytes(b"x" * ((1 << 20) + 1))
    with caplog.at_level(logging.WARNING, logger="bot.knowledge.chunking"):
        knowledge, added = await index(tmp_path)
    await knowledge.close()
    assert added == ["guides/setup.md"]
    assert f"not indexing {folder / 'dump.txt'}" in caplog.text and "limit" in caplog.text


async def test_a_named_pipe_is_not_read(tmp_path: Path, folder: Path) -> None:
    os.mkfifo(folder / "pipe.md")  # reading it would block the refresh forever
    knowledge, added = await index(tmp_path)
    await knowledge.close()
    assert added == ["guides/setup.md"]
