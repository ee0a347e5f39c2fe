"""Markdown (what the model writes) to Slack mrkdwn (what Slack's `text` field renders).

Parsed with markdown-it-py (CommonMark + strikethrough) and written back out node by node:
**bold** -> *bold*, _em_ -> _em_, ~~s~~ -> ~s~, [t](u) -> <u|t>, headings -> a bold line,
lists keep their bullets and numbers, code is kept verbatim. Slack's three control characters
& < > are escaped everywhere they are not markup, code included: Slack decodes the entities when
it displays a message, and a raw `<!channel>` inside a model's code block would otherwise ping.
Only http(s) and mailto targets become Slack links: Slack reads `<!channel|x>`, `<@U1|x>` and
`<#C1|x>` as a ping or a mention, so `[x](!channel)` from the model or a document is shown as
the text `x (!channel)` instead.
The two converters on PyPI were tried first: markdown-to-mrkdwn rewrites text inside code spans
and escapes nothing; slackify-markdown leaves code unescaped and mangles some links.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

BULLETS = ("•", "◦", "▪")  # by nesting depth, the deepest repeating
RULE = "———"  # mrkdwn has no horizontal rule
# The only targets that become Slack links: a web or mail address, with something after the scheme.
LINK_TARGET = re.compile(r"(?:https?://|mailto:)\S", re.IGNORECASE)

_parser = MarkdownIt("commonmark", {"html": False}).enable("strikethrough")


def escape(text: str) -> str:
    """Slack's required escaping of its control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    """Convert `markdown` to Slack mrkdwn."""
    root = SyntaxTreeNode(_parser.parse(markdown))
    return _Writer().blocks(root.children, tight=False).strip("\n")


class _Writer:
    def __init__(self) -> None:
        self._depth = 0  # list nesting
        self._in_heading = False

    def blocks(self, nodes: list[SyntaxTreeNode], *, tight: bool) -> str:
        rendered = [self.block(node, tight=tight) for node in nodes]
        return ("\n" if tight else "\n\n").join(r for r in rendered if r)

    def block(self, node: SyntaxTreeNode, *, tight: bool) -> str:
        kind = node.type
        if kind in ("paragraph", "inline"):
            return self.inlines(node)
        if kind == "heading":
            self._in_heading = True
            try:
                return f"*{self.inlines(node)}*"
            finally:
                self._in_heading = False
        if kind in ("fence", "code_block"):
            body = node.content if node.content.endswith("\n") else node.content + "\n"
            return f"```\n{escape(body)}```"
        if kind in ("bullet_list", "ordered_list"):
            return self.items(node)
        if kind == "blockquote":
            inner = self.blocks(node.children, tight=False)
            # A raw ">" at a line's start is markup (a quote), so it is not escaped.
            return "\n".join(f"> {line}" if line else ">" for line in inner.split("\n"))
        if kind == "hr":
            return RULE
        # html_block and anything unforeseen: shown as the text it was.
        return escape(node.content.rstrip("\n"))

    def items(self, node: SyntaxTreeNode) -> str:
        tight = (
            not any(
                child.type == "paragraph" and not child.hidden
                for item in node.children
                for child in item.children
            )
            if node.children
            else True
        )
        start = int(str(node.attrs.get("start", 1))) if node.type == "ordered_list" else 0
        self._depth += 1
        try:
            lines: list[str] = []
            for number, item in enumerate(node.children, start=start):
                if node.type == "ordered_list":
                    marker = f"{number}. "
                else:
                    marker = BULLETS[min(self._depth, len(BULLETS)) - 1] + " "
                body = self.blocks(item.children, tight=tight) or ""
                indent = " " * len(marker)
                first, *rest = body.split("\n")
                lines.append(marker + first)
                lines.extend(indent + line if line else line for line in rest)
            return "\n".join(lines)
        finally:
            self._depth -= 1

    def inlines(self, node: SyntaxTreeNode) -> str:
        return "".join(self.inline(child) for child in node.children)

    def inline(self, node: SyntaxTreeNode) -> str:
        kind = node.type
        if kind == "inline":
            return self.inlines(node)
        if kind == "text":
            return escape(node.content)
        if kind == "code_inline":
            return f"`{escape(node.content)}`"
        if kind in ("softbreak", "hardbreak"):
            return "\n"
        if kind == "strong":
            inner = self.inlines(node)
            return inner if self._in_heading else f"*{inner}*"
        if kind == "em":
            return f"_{self.inlines(node)}_"
        if kind == "s":
            return f"~{self.inlines(node)}~"
        if kind == "link":
            return _link(str(node.attrs.get("href", "")), self.inlines(node))
        if kind == "image":
            return _link(str(node.attrs.get("src", "")), escape(node.content))
        return escape(node.content)


def _link(target: str, label: str) -> str:
    """A Slack link for a web or mail `target` (already percent-encoded by the parser, so it
    holds no `|` or `>`); anything else as text, since Slack would read it as a ping."""
    if LINK_TARGET.match(target):
        href = escape(target)
        return f"<{href}>" if not label or label == href else f"<{href}|{label}>"
    shown = escape(_parser.normalizeLinkText(target))
    if not label or label == shown:
        return shown
    return f"{label} ({shown})" if shown else label
