"""Markdown to Slack mrkdwn: links, bold, code and lists survive; & < > never reach Slack raw, and
only web and mail links become Slack links (a link to `!channel` would ping everyone)."""

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


# Slack reads <!channel>, <!here>, <!everyone>, <!subteam^S1>, <@U1> and <#C1> as pings and
# mentions: a Markdown link to any of them, from the model or a document, must not become one.
@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("[x](!channel)", "x (!channel)"),
        ("[x](<!here>)", "x (!here)"),
        ("[everyone](!everyone)", "everyone (!everyone)"),
        ("[x](@U123)", "x (@U123)"),
        ("[general](#C123)", "general (#C123)"),
        ("[team](<!subteam^S1>)", "team (!subteam^S1)"),
        ("![x](!channel)", "x (!channel)"),
        ("[](!here)", "!here"),
        ("<foo:bar>", "foo:bar"),
        ("[setup](docs/setup.md)", "setup (docs/setup.md)"),
        ("[x](<a&b>)", "x (a&amp;b)"),
        ("[mail](mailto:help@example.com)", "<mailto:help@example.com|mail>"),
        ("<help@example.com>", "<mailto:help@example.com|help@example.com>"),
        ("[x](HTTP://EXAMPLE.COM/a)", "<HTTP://EXAMPLE.COM/a|x>"),
        ("![logo](https://example.com/l.png)", "<https://example.com/l.png|logo>"),
        # A "|" or ">" in a web link's target can't end the link early: it is percent-encoded.
        ("[x](<https://a.com|!channel>)", "<https://a.com%7C!channel|x>"),
    ],
)
def test_only_web_and_mail_links_become_slack_links(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


def test_a_heading_or_quote_holding_a_ping_link_stays_text() -> None:
    markdown = "# See [all](!channel)\n\n> ask [them](<!here>) or <!everyone>"
    assert to_mrkdwn(markdown) == (
        "*See all (!channel)*\n\n> ask them (!here) or &lt;!everyone&gt;"
    )


# The only "<...>" Slack may see: a web or mail link we made.
SLACK_LINK = re.compile(r"<(?:https?://|mailto:)[^<>|\s]+(?:\|[^<>]*)?>", re.IGNORECASE)
TARGETS = st.text(alphabet="<>!@#^|&:/xhtpsmailo.", min_size=1, max_size=20)
LINKS = st.builds("[{}]({}) {}".format, st.text(max_size=10), TARGETS, st.text(max_size=20))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), LINKS))
def test_no_raw_control_character_outside_slack_markup(markdown: str) -> None:
    out = to_mrkdwn(markdown)
    # Whatever is left after removing the links we made holds no raw "<" and no bare "&".
    stripped = SLACK_LINK.sub("", out)
    assert "<" not in stripped
    assert re.search(r"&(?!amp;|lt;|gt;)", stripped) is None
