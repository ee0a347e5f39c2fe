"""What an answer's messages should show at a moment: the text so far split at the platform's
size into messages, each closed so it renders on its own, the last one marked while the answer
is being written; at the end, the footer, warning or note under it.

A message that filled up while the answer was being written is frozen: the text only grows, so
it never changes again. `Layout` keeps those and memoizes rendering: layout runs before and after
each wait for a budget, and fitting renders too, so rendering (Slack: a markdown parse) is the
editor's main cost.
"""

from __future__ import annotations

from enum import Enum

from bot.errors import INTERRUPTED
from bot.streaming.splitting import Part, close_open, next_prefix, split
from bot.surface import Surface

PLACEHOLDER = "_Thinking…_"
MARKER = "⏳"  # shown at the end of an answer still being written
WARNING_SIGN = "⚠️"
# An answer is cancelled only when the bot stops (after SHUTDOWN_GRACE_SECONDS): the same words a
# crashed process's answer gets from the journal at the next start.
CANCELLED_NOTE = f"{WARNING_SIGN} {INTERRUPTED}"
EMPTY_ANSWER = "_No answer._"
SECTION_BREAK = "\n\n"
RENDER_CACHE = 64  # rendered texts kept per answer


class Ending(Enum):
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Layout:
    """One answer's messages as they should look, for one surface's size and format."""

    def __init__(self, surface: Surface) -> None:
        self._surface = surface
        self._frozen: list[Part] = []  # parts whose messages will not change until the end
        self._frozen_rendered: list[str] = []
        self._frozen_length = 0
        self._rendered: dict[tuple[str, bool], str] = {}

    def desired(self, text: str, ending: tuple[Ending, str] | None) -> tuple[list[str], bool]:
        """What each message should show for `text` so far, ended by `ending` (how, and the
        footer or warning) or still being written; and whether that shows any of the answer."""
        document, interim = self._document(text, ending)
        if not document:
            if self._surface.shows_waiting and ending is None:
                return [], False  # the platform shows the wait; post when there is text
            return [self._surface.render(PLACEHOLDER)], False
        tail = document[self._frozen_length :]
        prefix = next_prefix(self._frozen[-1]) if self._frozen else ""
        parts = split(tail, self._fits, prefix, self._fits_interim if interim else self._fits)
        if interim:
            # The text only grows, so a full message never changes again until the end.
            for part in parts[:-1]:
                self._frozen.append(part)
                self._frozen_rendered.append(self._show(part, marker=False))
                self._frozen_length += len(part.body)
            parts = parts[-1:]
        shown = [
            self._show(part, marker=interim and i == len(parts) - 1) for i, part in enumerate(parts)
        ]
        # A part of nothing but whitespace (the text's trailing blank lines) is not posted.
        shown = [text for text in shown if text.strip()]
        if not shown and not self._frozen_rendered:
            shown = [self._surface.render(EMPTY_ANSWER)]
        return self._frozen_rendered + shown, True

    def _document(self, text: str, ending: tuple[Ending, str] | None) -> tuple[str, bool]:
        """The markdown to show, and whether it is still being written."""
        if ending is None:
            return text, True
        how, extra = ending
        if how is Ending.DONE:
            note = extra.strip()
            if not text and not note:
                return EMPTY_ANSWER, False
        elif how is Ending.FAILED:
            note = f"{WARNING_SIGN} {extra.strip()}"
        else:
            note = CANCELLED_NOTE
        if not note:
            return text, False
        if not text.strip():
            return note, False
        # Trailing whitespace goes, but never from text a full message already shows.
        kept = text[: self._frozen_length] + text[self._frozen_length :].rstrip()
        return kept + SECTION_BREAK + note, False

    def _show(self, part: Part, *, marker: bool) -> str:
        key = (part.text, marker)
        shown = self._rendered.get(key)
        if shown is None:
            if len(self._rendered) >= RENDER_CACHE:
                self._rendered.clear()
            shown = self._rendered[key] = self._render(part, marker=marker)
        return shown

    def _render(self, part: Part, *, marker: bool) -> str:
        # Trailing blank lines show nothing, and an edit that only adds them would be wasted.
        markdown = close_open(part.text).rstrip()
        if marker:
            last_line = markdown.rsplit("\n", 1)[-1]
            # A closing fence must stand alone on its line.
            gap = "\n" if last_line.lstrip().startswith(("```", "~~~")) else " "
            markdown = f"{markdown}{gap}{MARKER}" if markdown else MARKER
        return self._surface.render(markdown)

    def _fits(self, part: Part) -> bool:
        surface = self._surface
        return surface.measure(self._show(part, marker=False)) <= surface.max_size

    def _fits_interim(self, part: Part) -> bool:
        surface = self._surface
        return surface.measure(self._show(part, marker=True)) <= surface.max_size
