"""Standard Markdown (what the model writes) made safe for Slack's `markdown_text` and markdown
block: the text people read stays the same, and nothing in it notifies anyone.

Slack reads `<!here>`, `<!channel>`, `<!everyone>`, `<!subteam^…>`, `<@U…>` and `<#C…>` as
pings and mentions, and its Markdown translation may do the same with a link whose target is one
(`[x](@U1)`, `[x](<!here>)`) or with a bare `@here`. As on the mrkdwn path, only web and mail
targets stay links: `[x](!channel)` outside code is shown as the text `x (!channel)`. Markdown
has no escape Slack documents for the rest (`&lt;` is decoded back to `<` in text; in code
nothing is escaped at all), so each such sequence is broken by an invisible WORD JOINER (U+2060)
after its `<`, `@` or `(`: people see the same characters, Slack finds no mention. That is done
everywhere, code and link labels included, as the mrkdwn path escapes code too: a model's code
block holding `<!channel>` would otherwise ping like any other text. Real links
(`[t](https://…)`, `<https://…>`, `<mailto:…>`) are left whole. Rewriting through a parse
(markdown-it) could not keep the rest of the text as written: it gives inline tokens no source
offsets.
"""

from __future__ import annotations

import re

JOINER = "\u2060"  # WORD JOINER: invisible, never a line break, not whitespace to Markdown
# `<`, or an entity Markdown decodes to `<`, before what Slack would read as a mention.
_OPENER = re.compile(r"(<|&lt;|&#0*60;|&#x0*3c;)(?=\s*[!@#]\w)", re.IGNORECASE)
# A bare broadcast word (not an address's `@`, as in bob@here.com).
_BROADCAST = re.compile(r"(?<![\w@])@(?=(?:here|channel|everyone)\b)", re.IGNORECASE)
# A link target, inline or in a reference definition, that is itself a mention.
_TARGET = re.compile(r"(\]\(\s*|^ {0,3}\[[^\]\n]+\]:[ \t]*)(?=[!@#]\w)", re.MULTILINE)


# An inline link whose target is a mention, a channel or a ping rather than an address.
_MENTION_LINK = re.compile(r"\[([^\]\n]*)\]\(\s*<?\s*([!@#][^()\s<>]*)>?\s*\)")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`).+?(?<!`)\1(?!`)", re.DOTALL)


def inert(markdown: str) -> str:
    """`markdown` with every mention and broadcast made plain text."""
    markdown = "".join(
        piece if code else _MENTION_LINK.sub(_as_text, piece) for piece, code in _pieces(markdown)
    )
    markdown = _OPENER.sub(lambda m: m.group(1) + JOINER, markdown)
    markdown = _TARGET.sub(lambda m: m.group(1) + JOINER, markdown)
    return _BROADCAST.sub("@" + JOINER, markdown)


def _as_text(link: re.Match[str]) -> str:
    label, target = link.group(1), link.group(2)
    return f"{label} ({target})" if label else target


def _pieces(markdown: str) -> list[tuple[str, bool]]:
    """`markdown` cut into (text, is code) pieces: fenced blocks and code spans are code."""
    pieces: list[tuple[str, bool]] = []
    prose: list[str] = []
    fence = ""
    for line in markdown.splitlines(keepends=True):
        opening = _FENCE.match(line)
        if fence:
            pieces.append((line, True))
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = ""
        elif opening:
            pieces += _spans("".join(prose))
            prose = []
            fence = opening.group(1)
            pieces.append((line, True))
        else:
            prose.append(line)
    return pieces + _spans("".join(prose))


def _spans(text: str) -> list[tuple[str, bool]]:
    pieces: list[tuple[str, bool]] = []
    position = 0
    for span in _CODE_SPAN.finditer(text):
        pieces += [(text[position : span.start()], False), (span.group(), True)]
        position = span.end()
    return [*pieces, (text[position:], False)]


def characters(text: str) -> int:
    """Length as Slack's 12,000-character limit may count it: in UTF-16 units (an emoji is two),
    the larger of the ways it could count."""
    return len(text.encode("utf-16-le")) // 2
