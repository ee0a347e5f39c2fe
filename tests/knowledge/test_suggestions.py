"""Suggested questions from the knowledge's headings: how headings are asked, which are skipped,
that the documents take turns, and that the questions follow the documents through a refresh,
with the index in DATA_DIR's files and in PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.knowledge import Knowledge
from bot.knowledge.chunking import Chunk
from bot.knowledge.suggestions import as_question, suggested_questions
from bot.settings import Settings
from tests.knowledge.test_shared_index import HashEmbedder


def chunk(path: str, heading: str | None, context: str = "", text: str = "Some text.") -> Chunk:
    return Chunk(f"{path}:{heading}:{context}", path, heading, context, text)


@pytest.mark.parametrize(
    ("heading", "question"),
    [
        ("Installing the relay", "How do I install the relay?"),
        ("Creating the Slack app", "How do I create the Slack app?"),
        ("Running a second replica", "How do I run a second replica?"),
        ("Re-indexing the knowledge", "How do I re-index the knowledge?"),
        ("Getting started", "How do I get started?"),
        ("Removing the key with /setkey clear", "How do I remove the key with /setkey clear?"),
        ("Storing your files", "How do I store my files?"),
        ("Add your documents", "How do I add my documents?"),
        ("How keys are stored", "How are keys stored?"),
        ("Where things live", "Where do things live?"),
        ("What you need", "What do I need?"),
        ("Who can use /setkey", "Who can use /setkey?"),
        ("Which key answers a question", "Which key answers a question?"),
        ("Can I share a key?", "Can I share a key?"),
        ("Rate limits", "What should I know about rate limits?"),
        ("Slack settings", "What should I know about Slack settings?"),
        ("DISCORD_GUILD_IDS in tests", "What should I know about DISCORD_GUILD_IDS in tests?"),
        ("**Logging** settings", "What should I know about logging settings?"),
    ],
)  # fmt: skip
def test_a_heading_is_asked_the_way_a_newcomer_would(heading: str, question: str) -> None:
    document = "Events come from Slack. Rate limits apply, and logging is on."

    assert as_question(heading, document) == question


@pytest.mark.parametrize(
    "heading",
    [
        "Introduction",
        "Overview",
        "Table of contents",
        "See also",
        "1. Installing the relay",
        "2.3 Rate limits",
        "Step 4: restart",
        "Chapter 2 Setup",
        "page 3",
        "Configuration",  # one word: too little to ask about
        "Asking questions: mentions",  # two topics
        "The bot does not answer in Slack",  # a sentence, not a topic
        "How the bot answers",  # no verb to move, and no "do" fits for sure
        'Refunds <img src=x onerror="alert(1)">',  # markup left in a heading
        "A heading that goes on and on well past what anyone would type as a question to a bot",
        None,
    ],
)
def test_headings_that_say_nothing_on_their_own_are_skipped(heading: str | None) -> None:
    chunks = [chunk("guide.md", heading), chunk("guide.md", "Installing the relay")]

    assert suggested_questions(chunks, 4) == ["How do I install the relay?"]


def test_documents_take_turns_and_their_shallowest_headings_come_first() -> None:
    chunks = [
        chunk("b.md", "Using the relay"),
        chunk("b.md", "Tuning the buffers", context="Using the relay"),
        chunk("b.md", "Tuning the buffers", context="Using the relay"),  # one section, two chunks
        chunk("a.md", "Deep details", context="Installing the relay / Linux"),
        chunk("a.md", "Installing the relay"),
        chunk("a.md", "Upgrading the relay", context="Installing the relay"),
    ]

    assert suggested_questions(chunks, 3) == [
        "How do I install the relay?",
        "How do I use the relay?",
        "How do I upgrade the relay?",
    ]
    assert len(suggested_questions(chunks, 10)) == 5  # every heading once


@pytest.fixture
async def knowledge_for(tmp_path: Path) -> AsyncIterator[Callable[[dict[str, Any]], Knowledge]]:
    opened: list[Knowledge] = []

    def make(values: dict[str, Any]) -> Knowledge:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=tmp_path / "data",
            knowledge_dir=tmp_path / "kb",
            openai_api_key=None,
            **values,
        )
        opened.append(Knowledge(settings, embedder=HashEmbedder()))
        return opened[-1]

    yield make
    for knowledge in opened:
        await knowledge.close()


async def test_the_questions_follow_the_documents(
    tmp_path: Path,
    knowledge_for: Callable[[dict[str, Any]], Knowledge],
    index_at: dict[str, Any],
) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "relay.md").write_text(
        "# Installing the relay\n\nRun the installer.\n\n## Introduction\n\nHello.\n\n"
        "## Rotating the relay's keys\n\nEvery month.\n"
    )
    (folder / "billing.md").write_text("# Paying for seats\n\nBy card.\n")
    knowledge = knowledge_for(index_at)
    await knowledge.refresh()

    before = await knowledge.suggestions(4)
    (folder / "billing.md").unlink()
    (folder / "vacation.md").write_text("# Vacation policy\n\nEmployees get 25 days of vacation.\n")
    await knowledge.refresh()
    after = await knowledge.suggestions(4)

    assert before == [
        "How do I pay for seats?",
        "How do I install the relay?",
        "How do I rotate the relay's keys?",
    ]
    assert after == [
        "How do I install the relay?",
        "What should I know about vacation policy?",
        "How do I rotate the relay's keys?",
    ]


async def test_an_empty_index_suggests_nothing(
    knowledge_for: Callable[[dict[str, Any]], Knowledge],
) -> None:
    assert await knowledge_for({}).suggestions(4) == []
