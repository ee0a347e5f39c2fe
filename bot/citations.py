"""Sources an answer cites: what a numbered source is, and how the list reads under an answer."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Source:
    """One numbered source; [n] in the answer text refers to `number`."""

    number: int
    path: str  # relative to KNOWLEDGE_DIR, with forward slashes
    heading: str | None  # the markdown heading the passage sits under, if any
    excerpt: str
    score: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.path} › {self.heading}" if self.heading else self.path

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Source:
        return cls(
            number=int(data["number"]),
            path=str(data["path"]),
            heading=data.get("heading"),
            excerpt=str(data.get("excerpt", "")),
            score=float(data.get("score", 0.0)),
        )


def sources_markdown(sources: Sequence[Source]) -> str:
    """The block appended under a finished answer, in plain markdown every platform renders."""
    if not sources:
        return ""
    lines = [f"[{s.number}] {s.label}" for s in sources]
    return "**Sources**\n" + "\n".join(lines)


def dump(sources: Iterable[Source]) -> list[dict[str, Any]]:
    return [s.to_json() for s in sources]
