"""A document whose parse never ends (a pathological PDF) is skipped after MAX_PARSE_SECONDS, its
worker process killed, and every other document is indexed and found."""

from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path

import pytest

from bot.knowledge import Knowledge
from bot.settings import Settings
from tests.knowledge.worker_parsers import parse_or_hang

RELAY = "# The relay\n\nThe relay listens on port 7443 for the sensors' readings.\n"
VACATION = "# Vacation\n\nEmployees get 25 days of paid vacation per year.\n"


async def test_a_hanging_parse_is_skipped_after_the_limit_and_the_rest_is_answerable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "relay.md").write_text(RELAY)
    (kb / "hang.md").write_text("# Looks harmless\n\nBut its parse never ends.\n")
    (kb / "crash.md").write_text("# Also harmless\n\nIts parse takes the worker down.\n")
    (kb / "vacation.md").write_text(VACATION)
    settings = Settings(  # type: ignore[call-arg]  # pydantic-settings' own argument
        _env_file=None,
        data_dir=tmp_path / "data",
        knowledge_dir=kb,
        openai_api_key=None,
        max_parse_seconds=1,
    )
    knowledge = Knowledge(settings, parse=parse_or_hang)
    try:
        with caplog.at_level(logging.WARNING, logger="bot.knowledge.refresh"):
            report = await knowledge.refresh()
        assert report.added == ("relay.md", "vacation.md")
        assert report.failed == ("crash.md", "hang.md")
        assert (
            f"not indexing {kb / 'hang.md'}: parsing took over 1 s, the MAX_PARSE_SECONDS limit"
            in caplog.text
        )
        assert "could not index crash.md" in caplog.text
        assert multiprocessing.active_children() == []  # no worker left parsing for ever
        found = await knowledge.retrieve("which port does the relay use?", api_key=None, top_k=3)
        assert found.passages[0].path == "relay.md" and "7443" in found.passages[0].text
        found = await knowledge.retrieve("how many vacation days?", api_key=None, top_k=3)
        assert found.passages[0].path == "vacation.md"
    finally:
        await knowledge.close()
