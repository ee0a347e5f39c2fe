"""The knowledge index: formats, citations, incremental refresh, crash safety, persistence, the
saved keyword index, retrieval quality and the keyless relevance judgement on the bundled user
guide (with the real local embedding model), and dense + keyword search against a loopback
embeddings endpoint (EMBED_PROVIDER=openai; a small fake of POST /v1/embeddings defined here)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import math
import re
import shutil
import struct
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import bot.knowledge.refresh as refresh_module
from bot.knowledge import INDEX_DIRNAME, Knowledge, Passage, RefreshReport, Retrieval
from bot.knowledge.chunking import file_digest
from bot.knowledge.embeddings import LocalEmbedder, PassageVectors
from bot.knowledge.embeddings import Passage as EmbedInput
from bot.knowledge.files import IndexFiles
from bot.knowledge.keywords import KeywordIndex
from bot.resources import bundled
from bot.settings import Settings
from tests.knowledge.worker_parsers import PARSE_LOG_ENV, ParseLog, counting_parse

OPERATOR_KEY = "sk-operator-0000"
WORKSPACE_KEY = "sk-workspace-1111"


# -- helpers ---------------------------------------------------------------------------------


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings with the default (local) embedder: the real model, no key, no endpoint."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "knowledge_dir": tmp_path / "kb",
        "openai_api_key": None,
        "embed_model": "embed-fake-64",
        "openai_base_url": "http://127.0.0.1:9/v1",  # discard port: nothing listens
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def write(root: Path, relative: str, content: str | bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF showing `text` in Helvetica, with a correct cross-reference table."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


@pytest.fixture
async def open_knowledge() -> AsyncIterator[Callable[[Settings], Knowledge]]:
    """Knowledge instances closed at the end of the test (an endpoint embedder holds a client)."""
    opened: list[Knowledge] = []

    def factory(settings: Settings) -> Knowledge:
        opened.append(Knowledge(settings))
        return opened[-1]

    yield factory
    for instance in opened:
        await instance.close()


@pytest.fixture
def parse_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ParseLog:
    """How often each file was parsed (chunk_file called), by relative path. Parses run in worker
    processes, so they are counted in a file the workers append to."""
    log = tmp_path / "parses.log"
    monkeypatch.setenv(PARSE_LOG_ENV, str(log))
    monkeypatch.setattr(refresh_module, "chunk_file", counting_parse)
    return ParseLog(log)


def paths(found: Retrieval) -> list[str]:
    return [p.path for p in found.passages]


async def keyword_passages(knowledge: Knowledge, query: str, top_k: int = 3) -> list[Passage]:
    """The passages sharing a word with `query`, best first. Keyword search, since the default
    search returns the `top_k` closest passages however far they are from the question."""
    found = await knowledge.retrieve(query, api_key=None, top_k=top_k, method="keyword")
    return found.passages


async def keyword_paths(knowledge: Knowledge, query: str, top_k: int = 3) -> list[str]:
    return [p.path for p in await keyword_passages(knowledge, query, top_k)]


# -- formats and citations ---------------------------------------------------------------------


async def test_chunks_keep_their_file_and_heading(
    tmp_path: Path, open_knowledge: Callable[[Settings], Knowledge], index_at: dict[str, Any]
) -> None:
    settings = make_settings(tmp_path, **index_at)
    write(
        settings.knowledge_dir,
        "guides/install.md",
        "# Installing\n\nIntro.\n\n## On Linux\n\nUse the zypper package manager.\n\n"
        "## On macOS\n\nUse the homebrew formula.\n",
    )
    knowledge = open_knowledge(settings)
    await knowledge.refresh()

    [linux] = await keyword_passages(knowledge, "zypper package")
    [mac] = await keyword_passages(knowledge, "homebrew formula")
    best = await knowledge.retrieve("zypper package", api_key=None, top_k=3)

    assert (linux.path, linux.heading) == ("guides/install.md", "On Linux")
    assert "zypper" in linux.text
    assert (mac.path, mac.heading) == ("guides/install.md", "On macOS")
    assert best.passages[0].heading == "On Linux" and len(best.passages) == 3


async def test_long_sections_are_split_and_every_piece_keeps_the_heading(
    tmp_path: Path, open_knowledge: Callable[[Settings], Knowledge]
) -> None:
    settings = make_settings(tmp_path)
    sentences = " ".join(f"Sentence number {n} talks about topic{n}." for n in range(400))
    write(settings.knowledge_dir, "long.md", f"# Long section\n\n{sentences}\n")
    knowledge = open_knowledge(settings)

    report = await knowledge.refresh()
    [last] = await keyword_passages(knowledge, "topic399", top_k=1)

    assert report.chunks > 3
    assert last.heading == "Long section"
    assert "topic0." not in last.text


@dataclass(frozen=True)
class FormatCase:
    name: str
    content: str | bytes
    heading: str | None


FORMAT_CASES = [
    FormatCase(
        "notes.md", "# Intro\n\nfirst\n\n## Details\n\nThe wombatcode lives here.\n", "Details"
    ),
    FormatCase("notes.txt", "Plain notes.\nThe wombatcode lives here.\n", None),
    FormatCase(
        "notes.rst",
        "=====\nTitle\n=====\n\nIntro.\n\nDetails\n-------\n\nThe wombatcode lives here.\n",
        "Details",
    ),
    FormatCase(
        "notes.html",
        "<html><head><title>t</title><script>var hidden = 'scriptword';</script>"
        "<style>.stylewordclass { color: red }</style></head><body><h1>Intro</h1><p>first</p>"
        "<h2>Details</h2><p>The <b>wombatcode</b> lives here.</p>"
        "<script>console.log('scriptword')</script></body></html>",
        "Details",
    ),
    FormatCase("notes.pdf", minimal_pdf("The wombatcode lives here."), "page 1"),
]


@pytest.mark.parametrize("case", FORMAT_CASES, ids=[c.name for c in FORMAT_CASES])
async def test_each_supported_format_is_indexed(
    tmp_path: Path,
    open_knowledge: Callable[[Settings], Knowledge],
    case: FormatCase,
    index_at: dict[str, Any],
) -> None:
    settings = make_settings(tmp_path, **index_at)
    write(settings.knowledge_dir, case.name, case.content)
    write(settings.knowledge_dir, "other.md", "# Other\n\nSomething unrelated entirely.\n")
    knowledge = open_knowledge(settings)

    report = await knowledge.refresh()
    passages = await keyword_passages(knowledge, "wombatcode")

    assert case.name in report.added and report.dense
    assert [(p.path, p.heading) for p in passages] == [(case.name, case.heading)]
    assert "wombatcode" in passages[0].text


async def test_html_scripts_and_styles_are_not_indexed(
    tmp_path: Path, open_knowledge: Callable[[Settings], Knowledge]
) -> None:
    settings = make_settings(tmp_path)
    [html_case] = [c for c in FORMAT_CASES if c.name.endswith(".html")]
    write(settings.knowledge_dir, "page.html", html_case.content)
    knowledge = open_knowledge(settings)
    await knowledge.refresh()

    assert await keyword_paths(knowledge, "scriptword") == []
    assert await keyword_paths(knowledge, "stylewordclass") == []
    [passage] = await keyword_passages(knowledge, "wombatcode")
    assert "<b>" not in passage.text and "console" not in passage.text
    everything = await knowledge.retrieve("scriptword", api_key=None, top_k=10)
    assert not any("scriptword" in p.text or "styleword" in p.text for p in everything.passages)


async def test_an_unreadable_file_is_reported_and_the_rest_indexed(
    tmp_path: Path, open_knowledge: Callable[[Settings], Knowledge]
) -> None:
    settings = make_settings(tmp_path)
    write(settings.knowledge_dir, "broken.pdf", b"%PDF-1.4 this is not really a pdf")
    write(settings.knowledge_dir, "fine.md", "# Fine\n\nThe quokkaword is fine.\n")
    knowledge = open_knowledge(settings)

    report = await knowledge.refresh()

    assert report.failed == ("broken.pdf",)
    assert report.added == ("fine.md",)
    assert await keyword_paths(knowledge, "quokkaword") == ["fine.md"]


# -- incremental refresh and persistence -------------------------------------------------------


async def test_a_second_refresh_processes_nothing(
    tmp_path: Path,
    open_knowledge: Callable[[Settings], Knowledge],
    parse_count: dict[str, int],
    index_at: dict[str, Any],
) -> None:
    settings = make_settings(tmp_path, **index_at)
    write(settings.knowledge_dir, "a.md", "# A\n\nalpha text\n")
    write(settings.knowledge_dir, "sub/b.md", "# B\n\nbeta text\n")
    knowledge = open_knowledge(settings)
    first = await knowledge.refresh()
    calls: list[tuple[int, int]] = []

    second = await knowledge.refresh(progress=lambda done, total: calls.append((done, total)))

    assert sorted(first.added) == ["a.md", "sub/b.md"]
    assert (second.added, second.changed, second.removed) == ((), (), ())
    assert sorted(second.unchanged) == ["a.md", "sub/b.md"]
    assert second.chunks == first.chunks == 2
    assert parse_count == {"a.md": 1, "sub/b.md": 1}  # parsed once, by the first refresh
    assert calls == [(0, 0)]


async def test_touching_a_file_without_changing_it_is_not_a_change(
    tmp_path: Path,
    open_knowledge: Callable[[Settings], Knowledge],
    parse_count: dict[str, int],
    index_at: dict[str, Any],
) -> None:
    settings = make_settings(tmp_path, **index_at)
    path = write(settings.knowledge_dir, "a.md", "# A\n\nalpha text\n")
    knowledge = open_knowledge(settings)
    await knowledge.refresh()
    path.write_text("# A\n\nalpha text\n", encoding="utf-8")  # same bytes, new mtime

    report = await knowledge.refresh()

    assert report.unchanged == ("a.md",) and report.changed == ()
    assert parse_count == {"a.md": 1}


async def test_changing_one_file_reprocesses_only_that_file(
    tmp_path: Path,
    open_knowledge: Callable[[Settings], Knowledge],
    parse_count: dict[str, int],
    index_at: dict[str, Any],
) -> None:
    settings = make_settings(tmp_path, **index_at)
    write(settings.knowledge_dir, "a.md", "# A\n\nThe oldword is here.\n")
    write(settings.knowledge_dir, "b.md", "# B\n\nbeta text\n")
    knowledge = open_knowledge(settings)
    await knowledge.refresh()
    write(settings.knowledge_dir, "a.md", "# A\n\nThe newword is here.\n")
    progress: list[tuple[int, int]] = []

    report = await knowledge.refresh(progress=lambda done, total: progress.append((done, total)))

    assert (report.added, report.changed, report.unchanged) == ((), ("a.md",), ("b.md",))
    assert parse_count == {"a.md": 2, "b.md": 1}
    assert progress == [(0, 1), (1, 1)]
    assert await keyword_paths(knowledge, "newword") == ["a.md"]
    assert await keyword_paths(knowledge, "oldword") == []


async def test_deleting_a_file_removes_its_chunks(
    tmp_path: Path, open_knowledge: Callable[[Settings], Knowledge], index_at: dict[str, Any]
) -> None:
    settings = make_settings(tmp_path, **index_at)
    write(settings.knowledge_dir, "keep.md", "# Keep\n\nThe keepword stays.\n")
    gone = write(settings.knowledge_dir, "gone.md", "# Gone\n\nThe goneword and keepword.\n")
    knowledge = open_knowledge(settings)
    await knowledge.refresh()
    assert await keyword_paths(knowledge, "goneword") == ["gone.md"]
    gone.unlink()

    report = await knowledge.refresh()

    assert report.removed == ("gone.md",) and report.chunks == 1
    assert await keyword_paths(knowledge, "goneword") == []
    assert await keyword_paths(knowledge, "keepword") == ["keep.md"]
    assert paths(await knowledge.retrieve("goneword", api_key=None, top_k=10)) == ["keep.md"]
    if not index_at:
        index_files = list((settings.data_dir / "index" / "chunks").iterdir())
        assert len(index_files) == 1  # the deleted file's chunks are gone from disk too


async def test_the_index_persists_for_the_next_process(
    tmp_path: Path,
    open_knowledge: Callable[[Settings], Knowledge],
    parse_count: dict[str, int],
    index_at: dict[str, Any],
) -> None:
    settings = make_settings(tmp_path, **index_at)
    write(settings.knowledge_dir, "a.md", "# A\n\nThe persistword is here.\n")
    await open_knowledge(settings).refresh()

    later = open_knowledge(settings)  # e.g. `bot run` after `bot ingest`
    found = await later.retrieve("persistword", api_key=None, top_k=3)
    report = await later.refresh()

    assert paths(found) == ["a.md"]
    assert found.evidence.cosine is not None  # its vectors persisted too: dense search ran
    assert report.unchanged == ("a.md",) and report.dense
    assert parse_count == {"a.md": 1}


async def test_a_running_bot_sees_what_another_process_ingested(
    tmp_path: Path, open_knowledge: Callable[[Settings], Knowledge], index_at: dict[str, Any]
) -> None:
    settings = make_settings(tmp_path, **index_at)
    write(settings.knowledge_dir, "a.md", "# A\n\nalpha text\n")
    running = open_knowledge(settings)
    await running.refresh()
    write(settings.knowledge_dir, "b.md", "# B\n\nThe lateword arrived.\n")

    await open_knowledge(settings).refresh()  # `bot ingest` while the bot runs

    assert await keyword_paths(running, "lateword") == ["b.md"]


async def test_a_crash_mid_refresh_leaves_the_previous_index_intact(
    tmp_path: Path, open_knowledge: Callable[[Settings], Knowledge], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path)
    write(settings.knowledge_dir, "a.md", "# A\n\nThe firstword is here.\n")
    await open_knowledge(settings).refresh()
    write(settings.knowledge_dir, "a.md", "# A\n\nThe secondword is here.\n")

    def crash(source: object, destination: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr("os.replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        await open_knowledge(settings).refresh()
    monkeypatch.undo()

    survivor = open_knowledge(settings)
    assert await keyword_paths(survivor, "firstword") == ["a.md"]
    leftovers = [p.name for p in (settings.data_dir / "index").rglob("*.tmp")]
    assert leftovers == []
    assert (await survivor.refresh()).changed == ("a.md",)
    assert await keyword_paths(survivor, "secondword") == ["a.md"]


async def test_a_crash_mid_refresh_keeps_the_files_indexed_before_the_last_checkpoint(
    tmp_path: Path,
    open_knowledge: Callable[[Settings], Knowledge],
    parse_count: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_settings(tmp_path)
    for name in ("a.md", "b.md", "c.md"):
        write(settings.knowledge_dir, name, f"# {name}\n\nThe {name[0]}word is here.\n")
    monkeypatch.setattr(refresh_module, "CHECKPOINT_SECONDS", 0.0)  # after every file
    monkeypatch.setattr(refresh_module, "FILES_IN_FLIGHT", 1)  # in order: a, b, then c
    write_chunks, write_manifest = IndexFiles.write_chunks, IndexFiles.write_manifest
    b_committed = threading.Event()

    def noting_b(self: IndexFiles, manifest: Any) -> None:
        write_manifest(self, manifest)
        if "b.md" in manifest.files:
            b_committed.set()

    def disk_full_at_c(self: IndexFiles, path: str, sha256: str, chunks: Any) -> None:
        if path == "c.md":
            b_committed.wait(timeout=10)  # the crash comes after b's checkpoint, not during it
            raise OSError("disk full")
        write_chunks(self, path, sha256, chunks)

    monkeypatch.setattr(IndexFiles, "write_manifest", noting_b)
    monkeypatch.setattr(IndexFiles, "write_chunks", disk_full_at_c)
    with pytest.raises(OSError, match="disk full"):
        await open_knowledge(settings).refresh()
    monkeypatch.setattr(IndexFiles, "write_chunks", write_chunks)

    report = await open_knowledge(settings).refresh()

    assert report.unchanged == ("a.md", "b.md") and report.added == ("c.md",)
    assert parse_count == {"a.md": 1, "b.md": 1, "c.md": 2}


async def test_a_corrupt_manifest_means_a_rebuild_not_a_crash(
    tmp_path: Path, open_knowledge: Callable[[Settings], Knowledge]
) -> None:
    settings = make_settings(tmp_path)
    write(settings.knowledge_dir, "a.md", "# A\n\nThe sturdyword is here.\n")
    await open_knowledge(settings).refresh()
    (settings.data_dir / "index" / "manifest.json").write_text("{not json", encoding="utf-8")

    knowledge = open_knowledge(settings)
    assert await keyword_paths(knowledge, "sturdyword") == []
    report = await knowledge.refresh()

    assert report.added == ("a.md",)
    assert await keyword_paths(knowledge, "sturdyword") == ["a.md"]


async def test_lost_index_files_are_rebuilt_from_the_documents(
    tmp_path: Path, open_knowledge: Callable[[Settings], Knowledge]
) -> None:
    settings = make_settings(tmp_path)
    write(settings.knowledge_dir, "a.md", "# A\n\nThe phoenixword is here.\n")
    await open_knowledge(settings).refresh()
    for chunk_file_path in (settings.data_dir / "index" / "chunks").iterdir():
        chunk_file_path.unlink()

    knowledge = open_knowledge(settings)
    report = await knowledge.refresh()

    assert report.changed == ("a.md",)
    assert await keyword_paths(knowledge, "phoenixword") == ["a.md"]


def vector_file(settings: Settings, relative: str) -> Path:
    """Where the vectors of the current version of a document are kept."""
    files = IndexFiles(settings.data_dir / INDEX_DIRNAME)
    return files.vectors_path(relative, file_digest(settings.knowledge_dir / relative))


async def test_a_lost_vector_file_is_rebuilt_from_the_documents(
    tmp_path: Path, open_knowledge: Callable[[Settings], Knowledge]
) -> None:
    settings = make_settings(tmp_path)
    write(settings.knowledge_dir, "a.md", "# A\n\nThe phoenixword is here.\n")
    write(settings.knowledge_dir, "b.md", "# B\n\nbeta text\n")
    await open_knowledge(settings).refresh()
    vector_file(settings, "a.md").unlink()

    knowledge = open_knowledge(settings)
    report = await knowledge.refresh()

    assert await keyword_paths(knowledge, "phoenixword") == ["a.md"]
    assert report.chunks == 2 and report.dense
    assert vector_file(settings, "a.md").is_file()


async def test_a_damaged_vector_file_does_not_break_search(
    tmp_path: Path, open_knowledge: Callable[[Settings], Knowledge]
) -> None:
    settings = make_settings(tmp_path)
    write(settings.knowledge_dir, "a.md", "# A\n\nThe mendedword is here.\n")
    await open_knowledge(settings).refresh()
    damaged = vector_file(settings, "a.md")
    damaged.write_bytes(damaged.read_bytes()[:40])  # a zip cut short

    knowledge = open_knowledge(settings)

    assert await keyword_paths(knowledge, "mendedword") == ["a.md"]
    # The next refresh embeds the document again, and dense search is back.
    report = await knowledge.refresh()
    assert report.dense and report.unchanged == ("a.md",)
    found = await knowledge.retrieve("mendedword", api_key=None, top_k=1)
    assert found.evidence.cosine is not None


class CountingEmbedder(LocalEmbedder):
    """The local model, noting the file of every passage it embeds."""

    def __init__(self) -> None:
        super().__init__()
        self.embedded: Counter[str] = Counter()

    async def passages(self, passages: Sequence[EmbedInput]) -> PassageVectors:
        self.embedded.update(passage.title.split(" / ")[0] for passage in passages)
        return await super().passages(passages)


async def test_only_new_and_changed_documents_are_embedded(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    write(settings.knowledge_dir, "a.md", "# A\n\nalpha text\n\n## More\n\nmore alpha\n")
    write(settings.knowledge_dir, "b.md", "# B\n\nThe oldword is here.\n")
    write(settings.knowledge_dir, "c.md", "# C\n\ngamma text\n")
    first, second = CountingEmbedder(), CountingEmbedder()
    knowledge = Knowledge(settings, embedder=first)
    await knowledge.refresh()
    await knowledge.close()
    write(settings.knowledge_dir, "b.md", "# B\n\nThe newword is here.\n")
    (settings.knowledge_dir / "c.md").unlink()
    write(settings.knowledge_dir, "d.md", "# D\n\ndelta text\n")

    later = Knowledge(settings, embedder=second)
    report = await later.refresh()
    again = await later.refresh()
    found = await later.retrieve("newword", api_key=None, top_k=1)
    await later.close()

    assert first.embedded == {"a.md": 2, "b.md": 1, "c.md": 1}
    assert second.embedded == {"b.md": 1, "d.md": 1}  # neither a.md again nor the deleted c.md
    assert report.dense and again.dense and again.unchanged == ("a.md", "b.md", "d.md")
    assert paths(found) == ["b.md"] and found.evidence.cosine is not None


async def test_a_document_without_text_does_not_keep_local_dense_search_off(
    tmp_path: Path, open_knowledge: Callable[[Settings], Knowledge]
) -> None:
    settings = make_settings(tmp_path)
    write(settings.knowledge_dir, "a.md", "# A\n\nalpha text\n")
    write(settings.knowledge_dir, "empty.md", "")

    knowledge = open_knowledge(settings)
    report = await knowledge.refresh()
    found = await knowledge.retrieve("alpha", api_key=None, top_k=3)

    assert report.dense and report.note is None and "empty.md" in report.added
    assert paths(found) == ["a.md"] and found.evidence.cosine is not None


@pytest.fixture
def keyword_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every BM25 index built from chunk texts (not loaded from disk)."""
    builds: list[int] = []
    build = KeywordIndex.__init__

    def counting(self: KeywordIndex, texts: Any, candidates: int) -> None:
        builds.append(len(texts))
        build(self, texts, candidates)

    monkeypatch.setattr(KeywordIndex, "__init__", counting)
    return builds


def saved_keyword_indexes(settings: Settings) -> list[Path]:
    return sorted((settings.data_dir / "index" / "keywords").iterdir())


async def test_a_restart_loads_the_saved_keyword_index_instead_of_rebuilding_it(
    tmp_path: Path, open_knowledge: Callable[[Settings], Knowledge], keyword_builds: list[int]
) -> None:
    settings = make_settings(tmp_path)
    write(settings.knowledge_dir, "a.md", "# A\n\nThe loadedword is here.\n")
    write(settings.knowledge_dir, "b.md", "# B\n\nbeta text\n")
    await open_knowledge(settings).refresh()
    assert keyword_builds == [2]

    restarted = open_knowledge(settings)  # what `bot run` does at start
    report = await restarted.refresh()
    found = await keyword_paths(restarted, "loadedword")

    assert report.unchanged == ("a.md", "b.md")
    assert found == ["a.md"]
    assert keyword_builds == [2]  # built once, by the first process
    assert len(saved_keyword_indexes(settings)) == 1


async def test_a_changed_document_invalidates_the_saved_keyword_index(
    tmp_path: Path, open_knowledge: Callable[[Settings], Knowledge], keyword_builds: list[int]
) -> None:
    settings = make_settings(tmp_path)
    write(settings.knowledge_dir, "a.md", "# A\n\nThe oldword is here.\n")
    write(settings.knowledge_dir, "b.md", "# B\n\nbeta text\n")
    await open_knowledge(settings).refresh()
    write(settings.knowledge_dir, "a.md", "# A\n\nThe newword is here.\n")

    await open_knowledge(settings).refresh()  # `bot ingest` after the edit
    restarted = open_knowledge(settings)
    await restarted.refresh()

    assert await keyword_paths(restarted, "newword") == ["a.md"]
    assert await keyword_paths(restarted, "oldword") == []
    assert keyword_builds == [2, 2]  # rebuilt for the edit, loaded by the restart
    assert len(saved_keyword_indexes(settings)) == 1  # the stale index is deleted


async def test_a_damaged_saved_keyword_index_is_rebuilt(
    tmp_path: Path, open_knowledge: Callable[[Settings], Knowledge], keyword_builds: list[int]
) -> None:
    settings = make_settings(tmp_path)
    write(settings.knowledge_dir, "a.md", "# A\n\nThe mendedword is here.\n")
    await open_knowledge(settings).refresh()
    for saved in saved_keyword_indexes(settings)[0].iterdir():
        saved.write_bytes(b"garbage")

    restarted = open_knowledge(settings)

    assert await keyword_paths(restarted, "mendedword") == ["a.md"]
    assert keyword_builds == [1, 1]


async def test_an_empty_knowledge_folder_gives_no_passages(
    tmp_path: Path, open_knowledge: Callable[[Settings], Knowledge], index_at: dict[str, Any]
) -> None:
    knowledge = open_knowledge(make_settings(tmp_path, **index_at))

    report = await knowledge.refresh()

    found = await knowledge.retrieve("anything at all", api_key=None, top_k=3)

    assert report == RefreshReport()
    assert found.passages == [] and not found.relevant


# -- retrieval quality on the bundled user guide -------------------------------------------------

GUIDE_QUESTIONS = [
    ("How do I set the API key for our Slack workspace?", "setkey.md", "Setting the key in Slack"),
    ("Who is allowed to run /setkey?", "setkey.md", "Who can use /setkey"),
    ("Are API keys stored encrypted?", "setkey.md", "How keys are stored"),
    ("Should I use Socket Mode or HTTP mode?", "slack.md", "Socket Mode vs HTTP mode"),
    ("Where do I find the invite URL for Discord?", "discord.md", "The invite URL"),
    ("What does DISCORD_GUILD_IDS do?", "discord.md", "Slash commands and DISCORD_GUILD_IDS"),
    ("Why does the bot say it doesn't know?", "troubleshooting.md", '"I don\'t know" answers'),
    ("How do I re-index the documents after editing them?", "troubleshooting.md",
     "Re-indexing the knowledge"),
    ("What does bot ingest do?", "getting-started.md", "Index the documents with bot ingest"),
    ("Which setting changes the embedding model?", "configuration.md", "The model endpoint"),
]  # fmt: skip

OFF_TOPIC = [
    "What is the capital of Peru?",
    "How do I bake sourdough bread?",
    "Who won the football world cup in 1998?",
    # These share a word with the guide ("server", "language", "live"): keyword search alone
    # would find them passages.
    "What's the weather like in the server room today?",
    "What is the best programming language for beginners?",
    "How many people live in Tokyo?",
]


@pytest.fixture(scope="session")
def guide_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The bundled guide, indexed once for the session (embedding its passages takes seconds)."""
    root = tmp_path_factory.mktemp("guide")

    async def ingest() -> RefreshReport:
        knowledge = Knowledge(make_settings(root, knowledge_dir=bundled("knowledge")))
        try:
            return await knowledge.refresh()
        finally:
            await knowledge.close()

    report = asyncio.run(ingest())
    assert report.chunks > 30 and not report.failed and report.dense
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def guide(guide_root: Path, open_knowledge: Callable[[Settings], Knowledge]) -> Knowledge:
    knowledge = open_knowledge(make_settings(guide_root, knowledge_dir=bundled("knowledge")))
    report = await knowledge.refresh()
    assert report.added == () and report.dense  # the session's index, not a new one
    return knowledge


async def test_guide_questions_find_the_right_section_in_the_top_three(guide: Knowledge) -> None:
    misses = []
    for question, path, heading in GUIDE_QUESTIONS:
        found = await guide.retrieve(question, api_key=None, top_k=3)
        top = [(p.path, p.heading) for p in found.passages]
        if (path, heading) not in top or not found.relevant:
            misses.append((question, top, found.relevant))
    assert misses == []


async def test_off_topic_questions_get_passages_but_are_not_relevant(guide: Knowledge) -> None:
    for question in OFF_TOPIC:
        found = await guide.retrieve(question, api_key=None, top_k=5)
        assert len(found.passages) == 5, question  # no cutoff: the model would judge them
        assert not found.relevant, (question, found.evidence)


async def test_retrieve_returns_at_most_top_k_best_first(guide: Knowledge) -> None:
    passages = (await guide.retrieve("slack workspace api key", api_key=None, top_k=2)).passages

    assert len(passages) == 2
    assert passages[0].score >= passages[1].score


# -- endpoint embeddings (EMBED_PROVIDER=openai; a loopback fake of POST /v1/embeddings) ---------

# The fake embeds by concept: these words share a dimension, so "password" is near "credentials"
# although they share no letters (what keyword search cannot see). Other words hash to their own.
CONCEPTS = {
    "password": 0, "passwords": 0, "credentials": 0, "credential": 0, "passphrase": 0,
    "change": 1, "changing": 1, "rotate": 1, "rotating": 1, "replace": 1,
}  # fmt: skip
DIMENSIONS = 64
FAKE_STOPWORDS = frozenset(["the", "how", "and", "for", "you", "your", "from", "with", "what"])


def fake_vector(text: str) -> list[float]:
    vector = [0.0] * DIMENSIONS
    for word in re.findall(r"[a-z]+", text.lower()):
        if len(word) < 3 or word in FAKE_STOPWORDS:
            continue
        slot = CONCEPTS.get(word)
        if slot is None:
            slot = 2 + int(hashlib.sha256(word.encode()).hexdigest(), 16) % (DIMENSIONS - 2)
        vector[slot] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector] if any(vector) else [1.0] + [0.0] * (DIMENSIONS - 1)


@dataclass
class FakeEmbeddings:
    base_url: str = ""
    status: int = 200  # anything else: every call fails with it
    calls: list[tuple[str, list[str]]] = field(default_factory=list)  # (bearer key, inputs)

    def keys_used(self) -> set[str]:
        return {key for key, _ in self.calls}

    def texts_embedded(self, key: str) -> int:
        return sum(len(inputs) for used, inputs in self.calls if used == key)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.calls.append((key, inputs))
        if self.status != 200:
            error = {"message": "fake failure", "type": "server_error", "code": None}
            return web.json_response({"error": error}, status=self.status)
        data = []
        for index, text in enumerate(inputs):
            vector = fake_vector(text)
            embedding: Any = vector
            if body.get("encoding_format") == "base64":
                embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        usage = {"prompt_tokens": 1, "total_tokens": 1}
        return web.json_response(
            {"object": "list", "data": data, "model": body["model"], "usage": usage}
        )


@pytest.fixture
async def embeddings() -> AsyncIterator[FakeEmbeddings]:
    fake = FakeEmbeddings()
    app = web.Application()
    app.router.add_post("/v1/embeddings", fake.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.base_url = f"http://127.0.0.1:{port}/v1"
    yield fake
    await runner.cleanup()


def dense_settings(tmp_path: Path, fake: FakeEmbeddings, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "embed_provider": "openai",
        "openai_base_url": fake.base_url,
        "openai_api_key": OPERATOR_KEY,
    }
    values.update(overrides)
    return make_settings(tmp_path, **values)


def write_password_corpus(root: Path) -> None:
    # Keyword search finds "change ... password" in how-to.md and audit.md; only the vectors can
    # tell that rotating credentials is the same thing.
    write(root, "how-to.md", "# Changing your password\n\nTo change your password, open your "
          "profile settings page, pick a new password and confirm it.\n")  # fmt: skip
    write(root, "audit.md", "# Audit log\n\nThe audit log records logins, exports, deletions, "
          "invitations, billing changes, password resets and more for everyone.\n")  # fmt: skip
    write(root, "rotation.md", "# Rotating credentials\n\nRotate credentials regularly; "
          "new credentials work at once.\n")  # fmt: skip
    write(root, "unrelated.md", "# Holidays\n\nThe office closes in August.\n")


async def test_fusion_promotes_a_passage_keyword_search_misses(
    tmp_path: Path,
    open_knowledge: Callable[[Settings], Knowledge],
    embeddings: FakeEmbeddings,
    index_at: dict[str, Any],
) -> None:
    settings = dense_settings(tmp_path, embeddings, **index_at)
    write_password_corpus(settings.knowledge_dir)
    knowledge = open_knowledge(settings)
    report = await knowledge.refresh()
    question = "How do I change my password?"

    keyword_only = await keyword_paths(knowledge, question, top_k=5)
    fused = await knowledge.retrieve(question, api_key=WORKSPACE_KEY, top_k=5)

    assert report.dense and report.note is None
    assert keyword_only == ["how-to.md", "audit.md"]
    assert paths(fused) == ["how-to.md", "rotation.md", "audit.md", "unrelated.md"]
    # The corpus was embedded with the operator's key, the question with the workspace's.
    assert embeddings.texts_embedded(OPERATOR_KEY) == 4
    assert embeddings.calls[-1] == (WORKSPACE_KEY, [question])


async def test_a_question_is_embedded_with_the_key_it_is_given_or_not_at_all(
    tmp_path: Path, open_knowledge: Callable[[Settings], Knowledge], embeddings: FakeEmbeddings
) -> None:
    # Lending the operator's key to a workspace is bot.keys' decision (FALLBACK_KEY_SCOPE), so
    # the index never falls back to it on its own.
    settings = dense_settings(tmp_path, embeddings)
    write_password_corpus(settings.knowledge_dir)
    knowledge = open_knowledge(settings)
    await knowledge.refresh()
    question = "How do I change my password?"
    embedded = len(embeddings.calls)

    keyless = await knowledge.retrieve(question, api_key=None, top_k=2)
    assert len(embeddings.calls) == embedded and keyless.evidence.cosine is None
    found = await knowledge.retrieve(question, api_key=OPERATOR_KEY, top_k=2)

    assert paths(found) == ["how-to.md", "rotation.md"] and found.relevant
    assert embeddings.calls[-1] == (OPERATOR_KEY, [question])


async def test_an_off_topic_question_gets_passages_judged_not_relevant(
    tmp_path: Path, open_knowledge: Callable[[Settings], Knowledge], embeddings: FakeEmbeddings
) -> None:
    settings = dense_settings(tmp_path, embeddings)
    write_password_corpus(settings.knowledge_dir)
    knowledge = open_knowledge(settings)
    await knowledge.refresh()

    off_topic = await knowledge.retrieve("What is the capital of Peru?", api_key="k", top_k=5)
    on_topic = await knowledge.retrieve("How do I change my password?", api_key="k", top_k=5)

    assert len(off_topic.passages) == 4 and not off_topic.relevant  # every passage, however far
    assert on_topic.relevant


async def test_a_failing_embedding_endpoint_falls_back_to_keyword_search(
    tmp_path: Path,
    open_knowledge: Callable[[Settings], Knowledge],
    embeddings: FakeEmbeddings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = dense_settings(tmp_path, embeddings)
    write_password_corpus(settings.knowledge_dir)
    knowledge = open_knowledge(settings)
    await knowledge.refresh()
    embeddings.status = 500

    with caplog.at_level(logging.WARNING, logger="bot.knowledge"):
        found = await knowledge.retrieve("change my password", api_key=WORKSPACE_KEY, top_k=5)

    assert paths(found) == ["how-to.md", "audit.md"]
    assert found.evidence.cosine is None  # keyword search alone
    assert embeddings.calls[-1] == (WORKSPACE_KEY, ["change my password"])  # it was tried
    assert "dense search failed" in caplog.text
    assert WORKSPACE_KEY not in caplog.text


async def test_without_an_operator_key_the_index_is_keyword_only(
    tmp_path: Path, open_knowledge: Callable[[Settings], Knowledge], embeddings: FakeEmbeddings
) -> None:
    settings = dense_settings(tmp_path, embeddings, openai_api_key=None)
    write_password_corpus(settings.knowledge_dir)
    knowledge = open_knowledge(settings)

    report = await knowledge.refresh()
    found = await knowledge.retrieve("change my password", api_key=WORKSPACE_KEY, top_k=5)

    assert not report.dense and report.note is not None and "OPENAI_API_KEY" in report.note
    assert report.note == "EMBED_PROVIDER=openai but no OPENAI_API_KEY to embed with"
    assert paths(found) == ["how-to.md", "audit.md"]
    assert found.evidence.cosine is None
    assert embeddings.calls == []  # no vectors to compare with, so the question is not embedded


async def test_unchanged_files_are_not_embedded_again(
    tmp_path: Path, open_knowledge: Callable[[Settings], Knowledge], embeddings: FakeEmbeddings
) -> None:
    settings = dense_settings(tmp_path, embeddings)
    write_password_corpus(settings.knowledge_dir)
    first = open_knowledge(settings)
    await first.refresh()
    await first.close()
    embedded = embeddings.texts_embedded(OPERATOR_KEY)
    write(settings.knowledge_dir, "unrelated.md", "# Holidays\n\nThe office closes in July.\n")

    report = await open_knowledge(settings).refresh()

    assert report.changed == ("unrelated.md",) and report.dense
    assert embeddings.texts_embedded(OPERATOR_KEY) == embedded + 1


async def test_a_document_without_text_does_not_keep_dense_search_off(
    tmp_path: Path, open_knowledge: Callable[[Settings], Knowledge], embeddings: FakeEmbeddings
) -> None:
    settings = dense_settings(tmp_path, embeddings)
    write_password_corpus(settings.knowledge_dir)
    write(settings.knowledge_dir, "empty.md", "")

    report = await open_knowledge(settings).refresh()

    assert report.dense and "empty.md" in report.added


async def test_a_rejected_operator_key_leaves_keyword_search_and_is_retried(
    tmp_path: Path,
    open_knowledge: Callable[[Settings], Knowledge],
    embeddings: FakeEmbeddings,
    index_at: dict[str, Any],
) -> None:
    settings = dense_settings(tmp_path, embeddings, **index_at)
    write_password_corpus(settings.knowledge_dir)
    embeddings.status = 401
    knowledge = open_knowledge(settings)

    failed = await knowledge.refresh()
    embeddings.status = 200
    retried = await knowledge.refresh()
    fused = await knowledge.retrieve("How do I change my password?", api_key="k", top_k=5)

    assert not failed.dense and failed.note is not None and "embedding failed" in failed.note
    assert len(failed.added) == 4  # indexed for keyword search all the same
    assert retried.dense and len(retried.unchanged) == 4
    assert paths(fused)[:2] == ["how-to.md", "rotation.md"]  # dense search is back


async def test_changing_the_embedding_model_embeds_everything_again(
    tmp_path: Path,
    open_knowledge: Callable[[Settings], Knowledge],
    embeddings: FakeEmbeddings,
    index_at: dict[str, Any],
) -> None:
    settings = dense_settings(tmp_path, embeddings, **index_at)
    write_password_corpus(settings.knowledge_dir)
    first = open_knowledge(settings)
    await first.refresh()
    await first.close()
    other_model = dense_settings(tmp_path, embeddings, embed_model="embed-fake-other", **index_at)

    report = await open_knowledge(other_model).refresh()

    assert report.dense and len(report.unchanged) == 4
    assert embeddings.texts_embedded(OPERATOR_KEY) == 8


async def test_deleting_a_file_removes_its_vectors(
    tmp_path: Path, open_knowledge: Callable[[Settings], Knowledge], embeddings: FakeEmbeddings
) -> None:
    settings = dense_settings(tmp_path, embeddings)
    write_password_corpus(settings.knowledge_dir)
    knowledge = open_knowledge(settings)
    await knowledge.refresh()
    rotation = settings.knowledge_dir / "rotation.md"
    vector_file = IndexFiles(settings.data_dir / "index").vectors_path(
        "rotation.md", file_digest(rotation)
    )
    vector_folder = settings.data_dir / "index" / "vectors"
    assert vector_file.is_file() and len(list(vector_folder.glob("*.npz"))) == 4
    rotation.unlink()

    report = await knowledge.refresh()
    fused = await knowledge.retrieve("Rotate credentials", api_key="k", top_k=5)

    assert report.removed == ("rotation.md",) and report.dense
    assert "rotation.md" not in paths(fused) and len(fused.passages) == 3
    assert fused.evidence.cosine is not None  # dense search ran over what is left
    assert not vector_file.exists() and len(list(vector_folder.glob("*.npz"))) == 3
