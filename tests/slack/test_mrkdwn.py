"""Markdown to Slack mrkdwn: links, bold, code and lists survive; & < > never reach Slack raw."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.slack.mrkdwn import to_mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold** and __bold__", "*bold* and *bold*"),
        ("_italic_ and *italic*", "_italic_ and _italic_"),
        ("~~gone~~", "~gone~"),
        (
            "See [the guide](https://example.com/guide) now",
            "See <https://example.com/guide|the guide> now",
        ),
        ("<https://example.com>", "<https://example.com>"),
        ("[q](https://example.com/?a=1&b=2)", "<https://example.com/?a=1&amp;b=2|q>"),
        ("# Install\n\nRun it.", "*Install*\n\nRun it."),
        ("## A **bold** heading", "*A bold heading*"),
        ("- one\n- two\n  - nested", "• one\n• two\n  ◦ nested"),
        ("1. first\n2. second", "1. first\n2. second"),
        ("3. third\n4. fourth", "3. third\n4. fourth"),
        ("> quoted **text**", "> quoted *text*"),
        ("a & b < c > d", "a &amp; b &lt; c &gt; d"),
        ("<!channel> hello <@U123>", "&lt;!channel&gt; hello &lt;@U123&gt;"),
        ("line one\nline two", "line one\nline two"),
        ("[1] docs/setup.md › Install", "[1] docs/setup.md › Install"),
    ],
)
def test_converts(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


def test_code_is_kept_verbatim_apart_from_slacks_escapes() -> None:
    markdown = "Use `a**b**c` or:\n\n```python\nif x < 3 and **kw:\n    # not a heading\n```"
    assert to_mrkdwn(markdown) == (
        "Use `a**b**c` or:\n\n```\nif x &lt; 3 and **kw:\n    # not a heading\n```"
    )


def test_a_list_with_links_bold_and_code_survives() -> None:
    markdown = "Steps:\n\n1. Open [settings](https://x.io/s)\n2. Set **Token** to `abc`\n"
    assert to_mrkdwn(markdown) == (
        "Steps:\n\n1. Open <https://x.io/s|settings>\n2. Set *Token* to `abc`"
    )


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_no_raw_control_character_outside_slack_markup(markdown: str) -> None:
    out = to_mrkdwn(markdown)
    # Whatever is left after removing the links we made holds no raw "<" and no bare "&".
    stripped = re.sub(r"<[^<>|\s]+(\|[^<>]*)?>", "", out)
    assert "<" not in stripped
    assert re.search(r"&(?!amp;|lt;|gt;)", stripped) is None
