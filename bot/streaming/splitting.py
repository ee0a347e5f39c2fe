"""Cutting an answer into messages the platform accepts, and keeping every interim edit well-formed.

Plain functions over markdown, no I/O. `split` cuts text into `Part`s that each fit (the caller's
`fits` measures the rendered message), preferring paragraph, then line, then sentence, then word
boundaries; a cut inside a fenced code block closes the fence and reopens it, with its language,
in the next part. `close_open` closes, for display only, what a half-written answer left open.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

# A cut earlier than this share of the largest fitting prefix wastes too much of a message;
# the splitter then falls back to the next kind of boundary.
MIN_FILL = 0.5

_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})([^`]*)$")
_FENCE_CLOSE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*$")
# Boundaries, most preferred first; a cut goes right after the match.
_BOUNDARIES = (
    re.compile(r"\n[ \t]*\n"),  # paragraph
    re.compile(r"\n"),  # line
    re.compile(r"[.!?…][\"')\]*_]*[ \t]+"),  # sentence
    re.compile(r"[ \t]+"),  # word
)
_CODE_RUN = re.compile(r"`+")
_BOLD = re.compile(r"\*\*|__")


@dataclass(frozen=True)
class Part:
    """One message's share of the text.

    `body` is a slice of the original text: the bodies of `split`'s parts, joined, give the text
    back exactly. `prefix` is a fence reopener (the fence's own opening line and a newline) when
    the part starts inside a code block; `suffix` closes that block when the part ends inside it.
    """

    body: str
    prefix: str = ""
    suffix: str = ""

    @property
    def text(self) -> str:
        return self.prefix + self.body + self.suffix


def open_fence(markdown: str) -> str | None:
    """The opening line of the fenced code block still open at the end of `markdown`, if any."""
    opening: str | None = None
    marker = ""
    for line in markdown.split("\n"):
        if opening is None:
            found = _FENCE_OPEN.match(line)
            if found:
                opening, marker = line, found.group(1)
        else:
            closing = _FENCE_CLOSE.match(line)
            # Closed only by the same character, at least as many times.
            if closing and closing.group(1).startswith(marker):
                opening = None
    return opening


def _fence_marker(opening: str) -> str:
    found = _FENCE_OPEN.match(opening)
    assert found is not None
    return found.group(1)


def _closer(body: str, opening: str) -> str:
    return ("" if body.endswith("\n") else "\n") + _fence_marker(opening)


def close_open(markdown: str) -> str:
    """`markdown` with an open code fence, code span or bold run closed, for an interim display."""
    opening = open_fence(markdown)
    if opening is not None:
        return markdown + _closer(markdown, opening)
    # Inline markup cannot cross a blank line, so only the last paragraph can leave one open.
    last = re.split(r"\n[ \t]*\n", markdown)[-1]
    closers = ""
    outside: list[str] = []
    runs = list(_CODE_RUN.finditer(last))
    position, index = 0, 0
    while index < len(runs):
        run = runs[index]
        outside.append(last[position : run.start()])
        # A span opened by N backticks closes at the next run of exactly N.
        match = next(
            (k for k in range(index + 1, len(runs)) if len(runs[k].group()) == len(run.group())),
            None,
        )
        if match is None:
            closers += run.group()
            position = len(last)
            break
        position, index = runs[match].end(), match + 1
    outside.append(last[position:])
    bold = _BOLD.findall("".join(outside))
    if len(bold) % 2:
        closers += bold[-1]
    return markdown + closers


def _part(body: str, prefix: str) -> Part:
    opening = open_fence(prefix + body)
    return Part(body, prefix, _closer(body, opening) if opening else "")


def next_prefix(part: Part) -> str:
    """What the part after `part` must start with: the fence reopener if `part` cut a block."""
    opening = open_fence(part.prefix + part.body)
    return opening + "\n" if opening is not None else ""


def first_part(text: str, fits: Callable[[Part], bool], prefix: str = "") -> Part:
    """The best head of `text` that fits and leaves something over (`text` is too long as is).

    Always returns a non-empty body shorter than `text` when `text` has two characters or more,
    so repeated calls make progress even when nothing fits (a limit smaller than one character).
    """
    if len(text) < 2:
        return _part(text, prefix)
    low, high = 0, len(text)  # text[:low] fits (or low == 0); text[:high] does not count
    while high - low > 1:
        middle = (low + high) // 2
        if fits(_part(text[:middle], prefix)):
            low = middle
        else:
            high = middle
    if low == 0:
        return _part(text[:1], prefix)
    window = text[:low]
    floor = int(low * MIN_FILL)
    for boundary in _BOUNDARIES:
        cuts = [m.end() for m in boundary.finditer(window) if m.end() >= max(floor, 1)]
        for cut in reversed(cuts):
            candidate = _part(text[:cut], prefix)
            if fits(candidate):
                return candidate
    return _part(window, prefix)


def split(
    text: str,
    fits: Callable[[Part], bool],
    prefix: str = "",
    fits_last: Callable[[Part], bool] | None = None,
) -> list[Part]:
    """Cut `text` into parts that each fit; the last part must also satisfy `fits_last`."""
    last_fits = fits_last or fits
    parts: list[Part] = []
    while True:
        whole = _part(text, prefix)
        if last_fits(whole) or len(text) < 2:
            parts.append(whole)
            return parts
        head = first_part(text, fits, prefix)
        parts.append(head)
        text = text[len(head.body) :]
        prefix = next_prefix(head)
