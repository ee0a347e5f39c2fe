"""Answer markdown to safe HTML for the web chat, rendered on the server with markdown-it-py.

Model output and documents are untrusted: raw HTML is escaped (html=False), links survive only
with an http(s) or mailto scheme and open with rel="noopener noreferrer", and images become plain
links so no answer can make the browser fetch from elsewhere. Sources arrive as data (the
surface writes no footer into the text) and are listed under the answer by the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

from bot.citations import Source

ALLOWED_LINK_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener noreferrer nofollow"


@dataclass(frozen=True)
class RenderedAnswer:
    """What the page shows for one message: the body as sanitized HTML, the sources as text."""

    html: str
    sources: list[str]


class _SafeMarkdown(MarkdownIt):
    """CommonMark plus tables and strikethrough, raw HTML escaped, only safe link schemes."""

    def __init__(self) -> None:
        super().__init__("commonmark", {"html": False, "linkify": False, "typographer": False})
        self.enable(["table", "strikethrough"])
        self.add_render_rule("link_open", _render_link_open)
        self.add_render_rule("image", _render_image_as_link)

    def validateLink(self, url: str) -> bool:
        try:
            scheme = urlsplit(url.strip()).scheme.lower()
        except ValueError:
            return False
        return scheme in ALLOWED_LINK_SCHEMES


def _render_link_open(
    renderer: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    token.attrSet("rel", LINK_REL)
    token.attrSet("target", "_blank")
    return renderer.renderToken(tokens, idx, options, env)


def _render_image_as_link(
    renderer: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    # An <img> would load from any host the text names (a tracking pixel in a document); a link
    # to it is the user's choice to follow.
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    alt = renderer.renderInlineAsText(token.children or [], options, env) or src
    return (
        f'<a href="{escapeHtml(src)}" rel="{LINK_REL}" target="_blank">'
        f"{escapeHtml('image: ' + alt)}</a>"
    )


_MARKDOWN = _SafeMarkdown()


def render_markdown(markdown: str) -> str:
    """Markdown to HTML that is safe to assign to innerHTML."""
    html: str = _MARKDOWN.render(markdown)
    return html


def render_answer(markdown: str, sources: Sequence[Source] = ()) -> RenderedAnswer:
    """One assistant message for the page: its body as safe HTML, its sources as lines."""
    return RenderedAnswer(
        html=render_markdown(markdown),
        sources=[f"[{source.number}] {source.label}" for source in sources],
    )
