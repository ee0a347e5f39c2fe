"""Turning one document of KNOWLEDGE_DIR into citable chunks: read it, split it at its headings,
cap each piece's size, and remember the file and heading every chunk came from.

Markdown, reStructuredText and HTML keep their headings; plain text has none; a PDF cites its page.
Pure functions, run in a worker thread by `bot.knowledge`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bs4 import BeautifulSoup, Tag
from llama_index.core.node_parser import MarkdownNodeParser, SentenceSplitter
from llama_index.core.schema import Document
from llama_index.readers.file import PDFReader

MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
TEXT_SUFFIXES = frozenset({".txt"})
RST_SUFFIXES = frozenset({".rst"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
PDF_SUFFIXES = frozenset({".pdf"})
SUPPORTED_SUFFIXES = MARKDOWN_SUFFIXES | TEXT_SUFFIXES | RST_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES

log = logging.getLogger(__name__)

# A document bigger than this is skipped (logged): a multi-GB file would stall the start and
# could run the machine out of memory while parsed; real manuals are far smaller.
MAX_FILE_BYTES = 64 << 20

# Tokens (cl100k, the bundled tiktoken cache) per chunk: a heading's section bigger than this is
# cut at sentence boundaries, with a little overlap so a sentence cut in two is still findable.
CHUNK_TOKENS = 384
CHUNK_OVERLAP_TOKENS = 48

# Chunk ids are uuid5 under this namespace: the same content at the same path gets the same ids,
# so re-running an interrupted refresh overwrites its vectors instead of duplicating them.
_CHUNK_NAMESPACE = uuid.UUID("9f1c7d1e-3b5a-4c47-9d8e-1a0f6b2c5e11")
_READ_BLOCK = 1 << 20

# A sentence ends at . ! or ? followed by whitespace. This replaces llama-index's default NLTK
# punkt splitter, whose data files NLTK refuses to open when an installer hard-linked them.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_MARKDOWN_HEADING = re.compile(r"^(#+)\s+(.*?)\s*#*\s*$")
_RST_ADORNMENT = re.compile(r"^([=\-`:'\"~^_*+#<>.])\1+\s*$")
_HTML_DROP = ("script", "style", "noscript", "template", "svg", "head", "iframe", "object")
_HTML_BLOCKS = (
    "p", "div", "section", "article", "main", "header", "footer", "nav", "aside", "li", "ul",
    "ol", "table", "tr", "blockquote", "dl", "dt", "dd", "figure", "figcaption", "form", "br",
    "hr",
)  # fmt: skip
_BLANK_RUNS = re.compile(r"\n{3,}")


@dataclass(frozen=True)
class Chunk:
    """One retrievable passage and where it came from."""

    id: str
    path: str  # relative to KNOWLEDGE_DIR, forward slashes
    heading: str | None  # the heading it sits under ("page 3" for a PDF), None if none
    context: str  # the headings above `heading`, " / "-joined; indexed, not shown
    text: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Chunk:
        return cls(
            id=str(data["id"]),
            path=str(data["path"]),
            heading=data.get("heading"),
            context=str(data.get("context", "")),
            text=str(data["text"]),
        )

    @property
    def indexed_text(self) -> str:
        """What search sees: the file name and headings count as words of the passage."""
        names = " ".join(part for part in (self.path, self.context, self.heading or "") if part)
        return f"{names}\n\n{self.text}"


def source_files(root: Path) -> dict[str, Path]:
    """Every supported document under `root` by its relative path; hidden files are skipped.

    Only regular files whose real path stays inside `root`, and no bigger than MAX_FILE_BYTES:
    whatever is indexed is quoted back to anyone who asks, so a link to /proc/self/environ or to
    DATA_DIR's secret key must not be followed, and one huge file must not stall a start.
    Symlinked folders are not entered. What is skipped is logged with its path.
    """
    found: dict[str, Path] = {}
    if not root.is_dir():
        return found
    inside = root.resolve()
    for folder, subfolders, names in os.walk(root, followlinks=False):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in subfolders:
            if (Path(folder) / name).is_symlink():
                log.warning("not indexing %s: a link to a folder", Path(folder) / name)
        for name in names:
            path = Path(folder) / name
            if name.startswith(".") or path.suffix.lower() not in SUPPORTED_SUFFIXES:
                continue
            if _indexable(path, inside):
                found[path.relative_to(root).as_posix()] = path
    return dict(sorted(found.items()))


def _indexable(path: Path, inside: Path) -> bool:
    try:
        real = path.resolve(strict=True)
        status = real.stat()
    except (OSError, RuntimeError) as exc:  # a dangling link, a loop, no permission
        log.warning("not indexing %s: %s", path, type(exc).__name__)
        return False
    if not real.is_relative_to(inside):
        log.warning("not indexing %s: it points outside the knowledge folder", path)
        return False
    if not stat.S_ISREG(status.st_mode):
        log.warning("not indexing %s: not a regular file", path)
        return False
    if status.st_size > MAX_FILE_BYTES:
        log.warning(
            "not indexing %s: %d MB, over the %d MB limit",
            path,
            status.st_size >> 20,
            MAX_FILE_BYTES >> 20,
        )
        return False
    return True


def file_digest(path: Path) -> str:
    """sha256 of the file's bytes: a change of content, not of mtime, means re-indexing."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def chunk_file(path: Path, relative: str, digest: str) -> list[Chunk]:
    """Read `path` (shown as `relative`) and cut it into chunks; raises on unreadable files."""
    suffix = path.suffix.lower()
    sections: list[tuple[str | None, str, str]]
    if suffix in PDF_SUFFIXES:
        sections = list(_pdf_sections(path))
    elif suffix in TEXT_SUFFIXES:
        sections = [(None, "", _read_text(path))]
    elif suffix in RST_SUFFIXES:
        sections = list(_markdown_sections(rst_to_markdown(_read_text(path))))
    elif suffix in HTML_SUFFIXES:
        sections = list(_markdown_sections(html_to_markdown(_read_text(path))))
    else:
        sections = list(_markdown_sections(_read_text(path)))
    splitter = _splitter()
    chunks: list[Chunk] = []
    for heading, context, text in sections:
        for piece in splitter.split_text(text):
            if not piece.strip():
                continue
            chunk_id = uuid.uuid5(_CHUNK_NAMESPACE, f"{relative}\0{digest}\0{len(chunks)}")
            chunks.append(Chunk(str(chunk_id), relative, heading, context, piece.strip()))
    return chunks


def warm_up() -> None:
    """Build the splitter once, so the first document's parse doesn't pay for its setup."""
    _splitter().split_text("Warm up.")


def _splitter() -> SentenceSplitter:
    return SentenceSplitter(
        chunk_size=CHUNK_TOKENS,
        chunk_overlap=CHUNK_OVERLAP_TOKENS,
        chunking_tokenizer_fn=_SENTENCE_END.split,
    )


def _read_text(path: Path) -> str:
    # Documents come from anywhere; a stray byte should cost one character, not the file.
    return path.read_bytes().decode("utf-8", errors="replace")


def _markdown_sections(text: str) -> Iterator[tuple[str | None, str, str]]:
    """(heading, headings above it, section text) for each heading's section."""
    parser = MarkdownNodeParser(include_prev_next_rel=False)
    for node in parser.get_nodes_from_documents([Document(text=text)]):
        body = node.get_content()
        first_line = body.split("\n", 1)[0]
        match = _MARKDOWN_HEADING.match(first_line)
        heading = (match.group(2).strip() or None) if match else None
        parents = str(node.metadata.get("header_path", "")).strip("/")
        yield heading, parents.replace("/", " / "), body


def _pdf_sections(path: Path) -> Iterator[tuple[str | None, str, str]]:
    for page in PDFReader(return_full_document=False).load_data(path):
        label = page.metadata.get("page_label")
        yield (f"page {label}" if label else None), "", page.get_content()


def rst_to_markdown(text: str) -> str:
    """reStructuredText section titles become markdown headings, levels in order of first use."""
    lines = text.split("\n")
    levels: dict[tuple[str, bool], int] = {}
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        overline = bool(_RST_ADORNMENT.match(line)) and index + 2 < len(lines)
        title_at = index + 1 if overline else index
        title = lines[title_at].strip() if title_at < len(lines) else ""
        under = lines[title_at + 1] if title_at + 1 < len(lines) else ""
        adornment = _RST_ADORNMENT.match(under)
        is_title = (
            bool(title)
            and not _RST_ADORNMENT.match(lines[title_at])
            and not lines[title_at].startswith((" ", "\t"))
            and adornment is not None
            and len(under.rstrip()) >= len(title)
            and (not overline or lines[index].strip()[0] == under.strip()[0])
        )
        if is_title and adornment is not None:
            style = (adornment.group(1), overline)
            level = levels.setdefault(style, len(levels) + 1)
            out.append(f"{'#' * min(level, 6)} {title}")
            index = title_at + 2
            continue
        out.append(line)
        index += 1
    return "\n".join(out)


def html_to_markdown(html: str) -> str:
    """The visible text of a page, its h1-h6 as markdown headings; scripts and styles dropped."""
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup.find_all(_HTML_DROP):
        tag.decompose()
    for pre in soup.find_all("pre"):
        # Fenced, so a "# comment" in a code sample is not taken for a heading.
        pre.insert_before("\n```\n")
        pre.insert_after("\n```\n")
    for level in range(1, 7):
        for heading in soup.find_all(f"h{level}"):
            title = " ".join(heading.get_text(" ").split())
            heading.replace_with(f"\n\n{'#' * level} {title}\n\n")
    for block in soup.find_all(_HTML_BLOCKS):
        if isinstance(block, Tag):
            block.insert_before("\n")
            block.insert_after("\n")
    lines = [line.strip() for line in soup.get_text().split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()
